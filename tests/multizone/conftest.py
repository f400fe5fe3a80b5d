"""A multi-zone deployment of real processes: global and zone control planes, sync workers."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import PostgresAdmin, postgres_url
from tests.helpers import MESHDNS, Meshdns, stop_process


@dataclass
class SyncProcess:
    """A real `meshdns sync` process for one zone."""

    zone: str
    zone_url: str
    global_url: str
    cwd: Path
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[str] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.cwd / f"sync-{self.zone}.log"

    def start(self) -> SyncProcess:
        command = [
            MESHDNS,
            "sync",
            "--zone",
            self.zone,
            "--zone-database-url",
            self.zone_url,
            "--global-database-url",
            self.global_url,
            *self.extra,
        ]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                command, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, text=True
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        assert self.process is not None
        return stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture
def databases(postgres_admin: PostgresAdmin) -> Iterator[Callable[[], str]]:
    """Make migrated Postgres databases on the one test server; dropped afterwards."""
    postgres_admin.require()
    names: list[str] = []

    def make() -> str:
        names.append(postgres_admin.create_migrated())
        return postgres_url(names[-1])

    yield make
    for name in names:
        postgres_admin.drop(name)


@pytest.fixture
def start_sync(tmp_path: Path) -> Iterator[Callable[..., SyncProcess]]:
    started: list[SyncProcess] = []

    def start(zone: str, zone_url: str, global_url: str, *extra: str) -> SyncProcess:
        worker = SyncProcess(zone, zone_url, global_url, tmp_path, tuple(extra)).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


__all__ = ["Meshdns", "SyncProcess"]
