"""Keeps a reader's snapshot of the registry current by following the change feed.

Cold start reads the whole registry once; after that only the changes, each batch
applied to a RegistryView and published as a new immutable snapshot with its Delta.
The reader is woken by NOTIFY (Postgres), by writes made in this process, and by a poll.
When the log cannot say what followed the cursor (compacted away, or lost by the database
in a failover: FeedGap), the follower reads the registry whole again and publishes that.
While the database is unreachable the last snapshot stays published: readers keep
answering from it, and the follower retries with backoff and catches up from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from datetime import datetime

from sqlalchemy.engine import make_url

from registry.errors import DatabaseUnavailable
from registry.feed.backoff import Backoff
from registry.feed.changes import FeedGap, Listener
from registry.feed.states import FeedBatch, UnreadableRow
from registry.feed.view import RegistryView
from registry.snapshot import Delta, Snapshot
from registry.store import Store

log = logging.getLogger("meshdns.feed")

Publish = Callable[[Snapshot, Delta | None], None]

_MAX_REPORTED = 10_000  # distinct unreadable rows remembered, so each is logged once
# How often to look for changes nobody told us about. On Postgres NOTIFY tells, so the
# poll is only a fallback; SQLite has no notifications across processes, so there the
# poll is how a second process on the same file learns of a write (a cheap indexed read).
POLL_INTERVAL = {"postgresql": 1.0, "sqlite": 0.1}


class RegistryFollower:
    """Follows the registry's change feed and hands each new snapshot to `publish`."""

    def __init__(
        self,
        store: Store,
        publish: Publish,
        *,
        poll_interval: float | None = None,
        local_zone: str | None = None,
    ) -> None:
        backend = make_url(store.engine.url).get_backend_name()
        self.store = store
        self.publish = publish
        self.poll_interval = poll_interval or POLL_INTERVAL.get(backend, 1.0)
        self.local_zone = local_zone
        self.view = RegistryView(local_zone)  # replaced at a reload: look it up each time
        self.revision: int | None = None  # the feed cursor: last revision applied
        self._mark: datetime | None = None  # the commit time of the change at the cursor
        # Full reloads forced by the feed (FeedGap), by reason: meshdns_feed_reloads_total.
        self.reloads: dict[str, int] = {}
        self.connected = False
        # When the snapshot was last known to hold everything committed (monotonic clock).
        self.current_at: float | None = None
        self.last_apply_seconds = 0.0  # time to apply the last batch, for benchmarks
        # Stored rows left out of the snapshot because they could not be read: each is
        # logged once and counted (meshdns_snapshot_unreadable_rows_total).
        self.unreadable_rows = 0
        self._reported: set[UnreadableRow] = set()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # set, and replaced, whenever the cursor moves
        self._watchers: list[tuple[frozenset[str], Callable[[Delta | None], None]]] = []
        self._listener = (
            Listener(store.engine.url.render_as_string(hide_password=False), self.wake)
            if backend == "postgresql"
            else None
        )

    @property
    def loaded(self) -> bool:
        return self.revision is not None

    @property
    def listening(self) -> bool | None:
        """Whether NOTIFYs arrive (None: this database has none, only polling)."""
        return None if self._listener is None else self._listener.connected

    def wake(self) -> None:
        """Read the feed now, e.g. right after this process committed a write."""
        self._wake.set()

    def on_change(self, kinds: Collection[str], callback: Callable[[Delta | None], None]) -> None:
        """Call `callback` with the delta whenever an applied batch changed a resource of
        one of `kinds` (with None after a full load)."""
        self._watchers.append((frozenset(kinds), callback))

    async def wait_for(self, revision: int, timeout: float) -> bool:
        """Wait until the snapshot holds `revision` (or `timeout` passes); whether it does."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.revision is None or self.revision < revision:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self.wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        return True

    async def load(self, *, fresh: bool = False) -> None:
        """Read the whole registry and publish it: the cold start (`fresh`: a reload, into
        a new view: what the old one held may be gone from the database)."""
        state = await self.store.read_all()
        if fresh:
            self.view = RegistryView(self.local_zone)
        self._apply(state, full=True)
        self.current_at = time.monotonic()
        self.connected = True

    async def catch_up(self) -> int:
        """Apply every change committed since the cursor; the number of changes applied."""
        if self.revision is None:
            await self.load()
            return 0
        applied = 0
        while True:
            try:
                batch = await self.store.read_feed(self.revision, mark=self._mark)
            except FeedGap as gap:
                self.reloads[gap.reason] = self.reloads.get(gap.reason, 0) + 1
                log.warning("%s; reading the registry whole again", gap)
                await self.load(fresh=True)
                return applied
            if batch is None:
                self.current_at = time.monotonic()
                return applied
            self._apply(batch, full=False)
            applied += len(batch.changes)

    def _apply(self, batch: FeedBatch, *, full: bool) -> None:
        started = time.perf_counter()
        for row in batch.unreadable:
            self._report(row)
        delta = self.view.apply_batch(batch)
        if full or delta:
            self.publish(self.view.snapshot, None if full else delta)
        for kinds, callback in self._watchers:
            if full or any(change.kind in kinds for change in batch.changes):
                callback(None if full else delta)
        self.revision = batch.revision
        self._mark = batch.mark
        self.last_apply_seconds = time.perf_counter() - started
        self._progress.set()
        self._progress = asyncio.Event()

    def _report(self, row: UnreadableRow) -> None:
        if row in self._reported:
            return
        if len(self._reported) >= _MAX_REPORTED:
            self._reported.clear()
        self._reported.add(row)
        self.unreadable_rows += 1
        log.error(
            "left %s %r out of the snapshot: its stored row cannot be read (%s); "
            "the rest of the registry is served; fix or delete it",
            row.kind,
            row.key,
            row.reason,
        )

    async def run(self) -> None:
        """Follow the feed until cancelled."""
        listener = (
            asyncio.create_task(self._listener.run(), name="feed-listener")
            if self._listener
            else None
        )
        backoff = Backoff()
        try:
            while True:
                self._wake.clear()
                try:
                    await self.catch_up()
                except DatabaseUnavailable as error:
                    if self.connected or self.revision is None:
                        log.warning(
                            "registry database lost; DNS keeps answering from revision %s: %s",
                            self.revision,
                            error,
                        )
                    self.connected = False
                    await self._sleep(backoff.next())
                    continue
                if not self.connected:
                    log.info("registry database connected; feed at revision %s", self.revision)
                self.connected = True
                backoff.reset()
                await self._sleep(self.poll_interval)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less if woken."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
