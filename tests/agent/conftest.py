"""Real `meshdns serve` and `meshdns dp run` processes on free loopback ports."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import LOOPBACK_SINK, MESHDNS, Meshdns, dig, eventually, free_port

# Short windows so the tests run quickly: offline after 3 x 0.2 s without a heartbeat.
FAST_LIVENESS = ("--heartbeat-interval", "0.2", "--offline-after", "3")


@dataclass
class Agent:
    """A real `meshdns dp run` process."""

    cp: str
    document: dict[str, Any]
    cwd: Path
    dns_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None

    @property
    def name(self) -> str:
        return str(self.document["name"])

    def start(self, timeout: float = 20) -> Agent:
        path = self.cwd / f"{self.name}.yaml"
        path.write_text(json.dumps(self.document))
        self.log_path = self.cwd / f"agent-{self.name}-{self.dns_port}.log"
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [MESHDNS, "dp", "run", "--cp", self.cp, "--dataplane-file", str(path)]
                + ["--dns-port", str(self.dns_port), "--upstream", LOOPBACK_SINK],
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        process = self.process

        def answering() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"agent exited early:\n{self.log()}")
            return "status: NOERROR" in dig(self.dns_port, "mesh.", "SOA")

        eventually(answering, lambda: f"agent DNS up:\n{self.log()}", timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def signal(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGTERM)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start a control plane (`cluster.serve(url, *extra)`) and agents (`cluster.agent(doc)`)."""
    started: list[Any] = []

    class Cluster:
        server: Meshdns

        def serve(self, database_url: str, *extra: str) -> Meshdns:
            self.server = Meshdns(database_url=database_url, cwd=tmp_path, extra=extra).start()
            started.append(self.server)
            return self.server

        def agent(self, document: dict[str, Any]) -> Agent:
            agent = Agent(self.server.api, document, tmp_path).start()
            started.append(agent)
            return agent

    yield Cluster()
    for process in reversed(started):
        process.stop()


def answers(port: int, name: str, qtype: str = "A") -> list[str]:
    """The answer section's data, sorted (endpoint answers rotate)."""
    return sorted(line for line in dig(port, "+short", name, qtype).splitlines() if line)


def resolved(port: int, name: str, qtype: str = "A", *extra: str) -> tuple[str, list[str]]:
    """The status and the answer section's data, sorted (``extra``: more dig options,
    such as ``-b ADDRESS`` to ask from a dataplane's address)."""
    output = dig(port, *extra, "+norecurse", name, qtype)
    status = re.search(r"status: (\w+)", output)
    assert status, output
    if ";; ANSWER SECTION:" not in output:
        return status.group(1), []
    section = output.split(";; ANSWER SECTION:", 1)[1].split("\n\n", 1)[0]
    return status.group(1), sorted(re.findall(r"^\S+\s+\d+\s+IN\s+\S+\s+(.+)$", section, re.M))


def wait_for(predicate: Callable[[], Any], timeout: float = 15, message: str = "condition") -> Any:
    """Poll `predicate` until truthy; fail with `message` after `timeout` seconds."""
    return eventually(predicate, message, timeout)


def overview(server: Meshdns, name: str) -> dict[str, Any] | None:
    response = httpx.get(f"{server.api}/meshes/default/dataplanes+insights/{name}", timeout=5)
    return None if response.status_code == 404 else response.json()
