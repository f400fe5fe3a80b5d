"""What the benchmarks share: databases of their own, `meshdns serve` processes, DNS polling."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
POSTGRES_ADMIN_URL = os.environ.get(
    "MESHDNS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# Published figures the issue compares against (milliseconds).
REFERENCES = [
    ("Kuma: VIPs refreshed every", "500 ms"),
    ("Kuma: dataplanes poll the control plane every", "1,000 ms"),
    ("CoreDNS kubernetes plugin: cached for", "5,000-30,000 ms"),
    ("Eureka: a new instance is seen after up to", "120,000 ms"),
]


def use_venv() -> None:
    """Re-run this script with the repository's .venv Python when started with another;
    make SIGTERM unwind (stop the servers, drop the database) as Ctrl-C does."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parents[1].resolve():
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), sys.argv[0], *sys.argv[1:]])


def meshdns_command() -> str:
    return str(Path(sys.executable).with_name("meshdns"))


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


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (not empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# -- databases ---------------------------------------------------------------------------


def _postgres_url(database: str, driver: str = "postgresql+asyncpg") -> str:
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_ADMIN_URL).set(drivername=driver, database=database)
    return url.render_as_string(hide_password=False)


async def _admin(statement: str) -> None:
    import asyncpg

    dsn = _postgres_url(make_admin_database(), driver="postgresql")
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def make_admin_database() -> str:
    from sqlalchemy.engine import make_url

    return make_url(POSTGRES_ADMIN_URL).database or "postgres"


def migrate(url: str) -> None:
    result = subprocess.run(
        [meshdns_command(), "migrate", "--database-url", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"meshdns migrate failed:\n{result.stdout}{result.stderr}")


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, migrated registry of its own: a new Postgres database (dropped at the end)
    on the shared server, or a SQLite file in a temporary directory."""
    if backend == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="meshdns-bench-"))
        try:
            url = f"sqlite+aiosqlite:///{directory / 'registry.db'}"
            migrate(url)
            yield url
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    name = f"meshdns_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        url = _postgres_url(name)
        migrate(url)
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- servers -----------------------------------------------------------------------------


@dataclass
class Server:
    """One `meshdns serve` process on free ports, logging to a file."""

    database_url: str
    log_dir: Path
    extra: Sequence[str] = ()
    dns_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    last_start_seconds: float = 0.0  # exec to /readyz 200, set by start()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"meshdns-{self.api_port}.log"

    def start(self, timeout: float = 120) -> float:
        """Start and wait for `/readyz` to be 200; the seconds that took."""
        import httpx

        command = [meshdns_command(), "serve", "--database-url", self.database_url]
        command += ["--dns-port", str(self.dns_port), "--api-port", str(self.api_port)]
        # The benchmarks ask from one address as fast as answers come: no rate limit,
        # unless `extra` sets one (scripts/bench/flood measures the limiter).
        command += ["--rate-limit", "0", *self.extra]
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.log_dir, stdout=log, stderr=subprocess.STDOUT
            )
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"meshdns serve exited:\n{self.log()}")
            try:
                if httpx.get(self.api + "/readyz", timeout=1).status_code == 200:
                    self.last_start_seconds = time.monotonic() - started
                    return self.last_start_seconds
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"meshdns serve not ready in {timeout} s:\n{self.log()}")

    def rss_bytes(self) -> int:
        """Resident memory of the process (VmRSS)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def servers(database_url: str, count: int, extra: Sequence[str] = ()) -> Iterator[list[Server]]:
    """`count` serve processes on one database, started one after the other."""
    log_dir = Path(tempfile.mkdtemp(prefix="meshdns-bench-logs-"))
    started: list[Server] = []
    try:
        for _ in range(count):
            server = Server(database_url, log_dir, extra)
            started.append(server)
            server.start()
        yield started
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(log_dir, ignore_errors=True)


# -- DNS ---------------------------------------------------------------------------------


class DnsPoller:
    """Asks one name over and over on one UDP socket, as fast as answers come back."""

    def __init__(self, port: int, source: str | None = None) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if source is not None:  # ask from this loopback address (a dataplane's, say)
            self.socket.bind((source, 0))
        self.socket.connect(("127.0.0.1", port))
        self.query_id = 0

    def close(self) -> None:
        self.socket.close()

    def ask(self, name: str, rdtype: str = "A", timeout: float = 1.0) -> tuple[int, list[str]]:
        """One query: (rcode, answer data); rcode -1 when no answer came in `timeout`."""
        import dns.message

        self.query_id = (self.query_id + 1) & 0xFFFF
        query = dns.message.make_query(name, rdtype, id=self.query_id)
        self.socket.sendto(query.to_wire(), self.socket.getpeername())
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return -1, []
            self.socket.settimeout(remaining)
            try:
                wire = self.socket.recv(65535)
            except TimeoutError:
                return -1, []
            reply = dns.message.from_wire(wire)
            if reply.id != self.query_id:  # a late answer to an earlier query
                continue
            return reply.rcode(), [item.to_text() for rrset in reply.answer for item in rrset]

    def wait_until(self, name: str, wanted: str | None, timeout: float = 10.0) -> float | None:
        """Poll until `name` answers NOERROR with `wanted` among the data (any data when
        None); the monotonic time of that answer, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rcode, data = self.ask(name)
            if rcode == 0 and data and (wanted is None or wanted in data):
                return time.monotonic()
        return None


def print_references() -> None:
    print("\nFor comparison (published figures, from the issue):")
    for label, figure in REFERENCES:
        print(f"  {label:<50} {figure:>16}")
