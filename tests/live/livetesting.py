"""Helpers for the live-registry tests: dataplane bodies, DNS probes, readiness, log lines."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import httpx

from tests.helpers import poll

# One DNS answer as the tests compare them: the rcode and the sorted answer data.
Answer = tuple[str, tuple[str, ...]]


def put_dataplane(api: str, body: dict[str, Any], timeout: float = 5) -> httpx.Response:
    return httpx.put(
        f"{api}/meshes/{body['mesh']}/dataplanes/{body['name']}", json=body, timeout=timeout
    )


def resolve(port: int, name: str, rdtype: str = "A", timeout: float = 2.0) -> Answer | None:
    """Ask 127.0.0.1:port over UDP once; None when no answer came within `timeout`."""
    query = dns.message.make_query(name, rdtype)
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)
    except dns.exception.Timeout:
        return None
    data = sorted(item.to_text() for rrset in reply.answer for item in rrset)
    return dns.rcode.to_text(reply.rcode()), tuple(data)


def wait_for_answer(
    port: int, name: str, expected: Callable[[Answer], bool], timeout: float = 5
) -> tuple[Answer | None, float]:
    """Poll DNS until an answer satisfies `expected`: (that answer or the last one, seconds)."""
    last: list[Answer | None] = [None]

    def probe() -> Answer | None:
        answer = resolve(port, name, timeout=1)
        last[0] = answer
        return answer if answer is not None and expected(answer) else None

    found, elapsed = poll(probe, timeout, interval=0.005)
    return (found if found is not None else last[0]), elapsed


def has_addresses(answer: Answer) -> bool:
    return answer[0] == "NOERROR" and bool(answer[1])


def is_nxdomain(answer: Answer) -> bool:
    return answer[0] == "NXDOMAIN"


@dataclass(frozen=True)
class Observation:
    at: float  # time.monotonic()
    name: str
    answer: Answer | None  # None: no answer within the timeout


@dataclass
class DnsProbe:
    """A thread asking every name in turn every `interval` seconds, recording each answer."""

    port: int
    names: Sequence[str]
    interval: float = 0.02
    timeout: float = 2.0
    observations: list[Observation] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> DnsProbe:
        self._thread = threading.Thread(target=self._run, name="dns-probe", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for name in self.names:
                    answer = resolve(self.port, name, timeout=self.timeout)
                    self.observations.append(Observation(time.monotonic(), name, answer))
                self._stop.wait(self.interval)
        except BaseException as error:  # reported by stop(), not lost in the thread
            self.error = error

    def stop(self) -> list[Observation]:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)
        if self.error is not None:
            raise AssertionError(f"the DNS probe failed: {self.error!r}") from self.error
        return self.observations


def readiness(api: str, timeout: float = 5) -> tuple[int, dict[str, Any]]:
    """`/readyz`: its status and body."""
    response = httpx.get(api + "/readyz", timeout=timeout)
    return response.status_code, response.json()


def feed_connected(body: dict[str, Any]) -> bool | None:
    """The `connected` flag of the change feed (or, before it, the registry) in `/readyz`."""
    for key in ("feed", "registry"):
        part = body.get(key)
        if isinstance(part, dict) and "connected" in part:
            return bool(part["connected"])
    return None


def reports_disconnected(status: int, body: dict[str, Any]) -> bool:
    return status == 503 or feed_connected(body) is False


def reports_connected(status: int, body: dict[str, Any]) -> bool:
    return status == 200 and body.get("ready") is True and feed_connected(body) is not False


# A serve log line is "<date> <time> <LEVEL> <logger>: <message>". Lines of the feed or the
# registry (not the API's "answered 503" lines) that mark losing and regaining the database.
_LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)$")
_LOSS = re.compile(r"unreachable|unavailable|disconnected|\blost\b|\bdown\b", re.IGNORECASE)
_RECOVERY = re.compile(
    r"\b(reachable|reconnected|recovered|restored|connected|caught up)\b", re.IGNORECASE
)


def feed_log_lines(log: str) -> list[str]:
    lines = []
    for line in log.splitlines():
        match = _LOG_LINE.match(line)
        if match and match["logger"].startswith("meshdns") and match["logger"] != "meshdns.api":
            lines.append(line)
    return lines


def loss_and_recovery(log: str) -> tuple[str | None, str | None]:
    """The first line marking the database lost, and the first after it marking it back."""
    lines = feed_log_lines(log)
    for index, line in enumerate(lines):
        if _LOSS.search(line):
            recovery = next(
                (
                    later
                    for later in lines[index + 1 :]
                    if _RECOVERY.search(later) and not _LOSS.search(later)
                ),
                None,
            )
            return line, recovery
    return None, None


def assert_kuma_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """`response` is `status` with Kuma's error body {title, details, causes}, no traceback."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith("application/json"), response
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"title", "details", "causes"}, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["details"], str) and body["details"], body
    assert isinstance(body["causes"], list), body
    assert "Traceback" not in response.text and 'File "' not in response.text, response.text
    return body
