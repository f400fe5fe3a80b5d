"""`--dns-workers N`: more DNS processes on the same port, each following the registry.

The `serve` process is DNS process 0; it starts N-1 workers (``python -m
meshdns.workers``), each with its own snapshot follower and DNS server bound with
SO_REUSEPORT, so the kernel spreads clients (by address and port) over all of them.
A worker is read-only: no API, no liveness, no migrations, no NOTIFY. It is built as
the `serve` process is (meshdns/wiring.py), so it answers alike, and learns of writes as
any reader does: by LISTEN on Postgres (polling as a fallback), by polling on SQLite,
which has no notifications across processes.

A worker's standard input is a pipe from its parent: its first line is the settings
(JSON); when it closes (the parent exited, however it died), the worker stops; so does
it on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from typing import Any

from meshdns.logs import configure_logging
from meshdns.settings import SETTINGS_FIELDS, Settings
from meshdns.wiring import (
    build_dns_server,
    build_follower,
    build_forwarder,
    build_handler,
    build_store,
)
from registry.store.database import create_engine

log = logging.getLogger("meshdns")

_READY = b"ready\n"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 5.0


class Workers:
    """The worker processes of one `serve`, started and stopped together."""

    def __init__(self, settings: Settings, port: int, count: int) -> None:
        self._settings = settings
        self._port = port
        self._count = count
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        """Start every worker and wait until each is loaded and listening."""
        # The settings go through the pipe, not the command line, which `ps` shows to
        # everyone (a database URL may hold a password).
        given = json.dumps(dataclasses.asdict(self._settings)).encode() + b"\n"
        for index in range(1, self._count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "meshdns.workers",
                str(self._port),
                str(index),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert process.stdin is not None
            process.stdin.write(given)
            await process.stdin.drain()
            self.processes.append(process)
        for index, process in enumerate(self.processes, start=1):
            assert process.stdout is not None
            try:
                async with asyncio.timeout(_START_TIMEOUT):
                    line = await process.stdout.readline()
            except TimeoutError:
                line = b""
            if line != _READY:
                await self.stop()
                raise OSError(f"DNS worker {index} did not start (see its log above)")
        # Process 0 is `serve` itself: --dns-workers counts it.
        count = len(self.processes) + 1
        log.info("%d DNS process%s serving port %d", count, "es" if count > 1 else "", self._port)

    async def stop(self) -> None:
        """SIGTERM every worker, wait a bounded time, then kill what is left."""
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for process in self.processes:
            try:
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


async def run_worker(settings: Settings, port: int, index: int) -> None:
    """One worker: follow the registry, answer DNS on the shared port, until told to stop."""
    engine = create_engine(settings.database_url)
    forwarder = build_forwarder(settings)
    handler = build_handler(settings, index, forwarder)
    follower = build_follower(settings, build_store(settings, engine), handler.update)
    await follower.load()
    dns = build_dns_server(settings, handler, forwarder, port)
    await dns.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    parent_gone = asyncio.create_task(reader.read())  # returns at EOF: the parent is gone
    follow_task = asyncio.create_task(follower.run(), name="snapshot-follower")
    sys.stdout.buffer.write(_READY)
    sys.stdout.flush()
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({stop_task, parent_gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stop_task, parent_gone, follow_task):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow_task
        await dns.close()
        if forwarder is not None:
            await forwarder.close()
        await engine.dispose()


def main(argv: list[str]) -> None:
    given: dict[str, Any] = json.loads(sys.stdin.buffer.readline())
    # JSON has no tuples: the repeatable options come back as lists.
    values: dict[str, Any] = {
        name: tuple(value) if isinstance(SETTINGS_FIELDS[name].default, tuple) else value
        for name, value in given.items()
    }
    settings = Settings(**values)
    port, index = int(argv[0]), int(argv[1])
    configure_logging(settings.log_level, settings.log_format, worker=index)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional on other platforms
        asyncio.run(run_worker(settings, port, index))
    else:
        uvloop.run(run_worker(settings, port, index))


if __name__ == "__main__":
    main(sys.argv[1:])
