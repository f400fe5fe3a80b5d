"""Shared test helpers: free ports, real `meshdns` processes, real DNS clients."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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


def eventually(check: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    """``check()``'s first truthy value, polling; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what} (last: {value!r})")
        time.sleep(0.05)


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


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"meshdns exited early:\n{self.log()}")
            try:
                if httpx.get(self.api + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"meshdns not ready in {timeout}s:\n{self.log()}")

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
