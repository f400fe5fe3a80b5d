"""Shared test helpers: free ports, real `meshdns` processes, real DNS clients."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
MESHDNS = str(Path(sys.executable).with_name("meshdns"))
IN_CI = os.environ.get("CI", "").lower() == "true"
LOOPBACK_SINK = "127.0.0.1:9"  # the discard port: nothing listens, so nothing answers


T = TypeVar("T")


def poll(check: Callable[[], T], timeout: float, interval: float = 0.05) -> tuple[T, float]:
    """``check()``'s first truthy value, or its last value once ``timeout`` has passed;
    and the seconds that took. The one polling loop of the tests: every wait calls it."""
    start = time.monotonic()
    while True:
        value = check()
        elapsed = time.monotonic() - start
        if value or elapsed >= timeout:
            return value, elapsed
        time.sleep(interval)


def eventually(
    check: Callable[[], T],
    what: str | Callable[[], str],
    timeout: float = 15.0,
    interval: float = 0.05,
) -> T:
    """``check()``'s first truthy value, polling; fail naming ``what`` after ``timeout``
    (``what`` may be a function, to describe the failure with what is known by then)."""
    value, _ = poll(check, timeout, interval)
    if not value:
        described = what() if callable(what) else what
        raise AssertionError(f"not within {timeout}s: {described} (last: {value!r})")
    return value


def stop_process(process: subprocess.Popen[Any]) -> int:
    """SIGTERM, then SIGKILL after 15 s; the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


# Ports handed out by free_port(): below the kernel's ephemeral range (32768 and up on
# Linux), where no client socket is given a port behind our back, and cut into one slice
# per pytest-xdist worker so that two workers never hand out the same port.
PORTS = range(20_000, 32_768)


def _port_slice() -> range:
    """This process's share of PORTS: its xdist worker's slice, or all of it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    size = len(PORTS) // max(workers, 1)
    return range(PORTS.start + index * size, PORTS.start + (index + 1) * size)


def _candidate_ports() -> Iterator[int]:
    """The slice's ports in turn, from a random one on: two test runs at once on the same
    machine (each with a worker gw0) seldom walk the same ports at the same time."""
    ports = _port_slice()
    start = random.SystemRandom().randrange(len(ports))  # whatever a test seeded
    while True:
        for offset in range(len(ports)):
            yield ports[(start + offset) % len(ports)]


_CANDIDATES = _candidate_ports()


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1, never handed out twice in one run
    (until the worker's slice of ports wraps around)."""
    for _ in range(200):
        port = next(_CANDIDATES)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port in {_port_slice()}")


def require_tool(name: str) -> str:
    """The path of a real client; skip without it, except under CI where it must exist."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/test installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Meshdns:
    """A real `meshdns serve` process on free ports."""

    database_url: str
    cwd: Path
    extra: Sequence[str] = ()
    dns_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    log_path: Path | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def command(self) -> list[str]:
        command = [MESHDNS, "serve", "--dns-port", str(self.dns_port)]
        command += ["--api-port", str(self.api_port)]
        if self.database_url:
            command += ["--database-url", self.database_url]
        return command + list(self.extra)

    def start(self, timeout: float = 20) -> Meshdns:
        self.log_path = self.cwd / f"meshdns-{self.api_port}.log"
        # Test traffic stays on loopback: without an --upstream of the test's own, names
        # outside the zone go to a closed loopback port, never to the host's resolver.
        env = {**os.environ, "MESHDNS_UPSTREAM": os.environ.get("MESHDNS_UPSTREAM", LOOPBACK_SINK)}
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"meshdns exited early:\n{self.log()}")
            try:
                return httpx.get(self.api + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(ready, lambda: f"meshdns ready:\n{self.log()}", timeout)
        return self

    def stop(self) -> int:
        assert self.process is not None
        return stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MESHDNS, *args, "--api", self.api],
            input=input,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )


def dig(port: int, *args: str) -> str:
    """Run the real `dig` against 127.0.0.1:port and return its output."""
    tool = require_tool("dig")
    result = subprocess.run(
        [tool, "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout
