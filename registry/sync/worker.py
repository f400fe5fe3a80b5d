"""The sync worker's run loop: both directions until caught up, then wait for a change;
a lost database is retried with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import make_url

from registry.errors import DatabaseUnavailable
from registry.feed.backoff import Backoff
from registry.feed.changes import Listener
from registry.feed.reader import read_revision
from registry.store import Store
from registry.sync.cursors import GLOBAL_SOURCE, read_cursor, zone_source
from registry.sync.pull import GlobalToZone
from registry.sync.push import ZoneToGlobal
from registry.sync.reports import PULL, PUSH, BatchReport, SyncStats, progress

log = logging.getLogger("meshdns.sync")


@dataclass(frozen=True, slots=True)
class SyncSettings:
    batch: int  # changes per transaction
    poll_interval: float  # fallback when no NOTIFY wakes the worker
    contact_interval: float = 5.0  # how often global hears from a quiet zone
    progress: bool = True  # a progress bar while far behind


class SyncWorker:
    """Replicates zone `zone` both ways between its store and the global store."""

    def __init__(
        self,
        zone: str,
        zone_store: Store,
        global_store: Store,
        settings: SyncSettings,
    ) -> None:
        self.zone = zone
        self.zone_store = zone_store
        self.global_store = global_store
        self.settings = settings
        batch = self.settings.batch
        self._push = ZoneToGlobal(zone, zone_store, global_store, batch)
        self._pull = GlobalToZone(zone, zone_store, global_store, batch)
        self._wake = asyncio.Event()
        self._last_contact = 0.0
        self.stats = SyncStats()

    @property
    def resyncs(self) -> dict[str, int]:
        """Whole replications, by direction, that a compacted log called for."""
        return {"push": self._push.resyncs, "pull": self._pull.resyncs}

    async def lag(self) -> dict[str, int]:
        """Revisions of each source not yet replicated, by direction: its newest revision
        less the cursor in the target."""
        async with self.zone_store.reading() as connection:
            zone_head = await read_revision(connection)
            pulled = await read_cursor(connection, GLOBAL_SOURCE)
        async with self.global_store.reading() as connection:
            global_head = await read_revision(connection)
            pushed = await read_cursor(connection, zone_source(self.zone))
        return {
            PUSH: max(0, zone_head - pushed),
            PULL: max(0, global_head - pulled),
        }

    async def push(self) -> BatchReport | None:
        """Replicate the next batch of the zone's changes to global; None when caught up."""
        return await self._push.step()

    async def pull(self) -> BatchReport | None:
        """Replicate the next batch of global's changes to the zone; None when caught up."""
        return await self._pull.step()

    async def sync_once(self) -> list[BatchReport]:
        """Both directions until caught up (global first, so zone meshes exist)."""
        reports: list[BatchReport] = []
        bar_after = self.settings.batch * 2 if self.settings.progress else None
        for step, label in (
            (self.pull, f"global -> {self.zone}"),
            (self.push, f"{self.zone} -> global"),
        ):
            with progress(label, bar_after) as advance:
                while (report := await step()) is not None:
                    reports.append(report)
                    self.stats.record(report)
                    # A summary per batch; batches of changes not ours to copy, quietly.
                    level = logging.INFO if any(report.written.values()) else logging.DEBUG
                    log.log(level, "%s", report.line())
                    advance(report.changes)
                    if report.changes < self.settings.batch:
                        break
        return reports

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Replicate until cancelled; a lost database is retried with backoff."""
        listeners = [
            asyncio.create_task(Listener(_url(store), self.wake).run())
            for store in (self.zone_store, self.global_store)
            if make_url(store.engine.url).get_backend_name() == "postgresql"
        ]
        backoff = Backoff()
        try:
            while True:
                self._wake.clear()
                try:
                    await self.sync_once()
                    self.stats.caught_up_at = time.monotonic()
                    await self._contact()
                except DatabaseUnavailable as error:
                    self.stats.errors += 1
                    delay = backoff.next()
                    log.warning("sync paused, retrying in %.1f s: %s", delay, error)
                    await asyncio.sleep(delay)
                    continue
                backoff.reset()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
        finally:
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)

    async def _contact(self) -> None:
        """Tell global this zone is in touch (its Zone's status), every contact interval."""
        now = time.monotonic()
        if now - self._last_contact < self.settings.contact_interval:
            return
        await self.global_store.touch_zone(self.zone, datetime.now(UTC))
        self._last_contact = now


def _url(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)
