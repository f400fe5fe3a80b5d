"""A bounded change log: the `changes` rows outside a window of revisions and age go.

Every write adds rows to `changes`, and a global control plane adds one for each change
every zone replicates to it; kept for ever, the log grows without bound and every new
reader would replay it. The log only has to hold what readers that are following it
have not read yet, so it keeps the last `keep` revisions, and of those the ones younger
than `max_age`; a reader whose cursor falls behind the window finds out (FeedGap,
``compacted``) and reads the registry whole, as at a cold start.

Deleting is idempotent: every control plane on a database may compact it, at any time,
beside writers and readers (a reader's transaction sees the log whole or compacted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, or_, select

from registry.errors import DatabaseUnavailable
from registry.feed.changes import read_revision
from registry.models import ChangeRow
from registry.store import Store
from registry.store.database import map_errors

log = logging.getLogger("meshdns.feed")

CHUNK = 10_000  # rows deleted per transaction: short transactions beside the writers


@dataclass(frozen=True, slots=True)
class Window:
    """What the log keeps: the last `revisions`, and of them those younger than
    `max_age` seconds (0: no age limit)."""

    revisions: int
    max_age: float = 0.0


async def compact(store: Store, window: Window, now: datetime) -> int:
    """Delete the changes outside `window`; how many went."""
    removed = 0
    while True:
        with map_errors(store.engine.url):
            removed_now = await _compact_chunk(store, window, now)
        if not removed_now:
            return removed
        removed += removed_now


async def _compact_chunk(store: Store, window: Window, now: datetime) -> int:
    """Delete up to CHUNK of the oldest changes outside `window`; how many went."""
    async with store.engine.begin() as connection:
        head = await read_revision(connection)
        outside = [ChangeRow.revision <= head - window.revisions]
        if window.max_age > 0:
            outside.append(ChangeRow.committed_at < now - timedelta(seconds=window.max_age))
        last = await connection.scalar(
            select(func.max(ChangeRow.revision)).where(
                ChangeRow.revision.in_(
                    select(ChangeRow.revision)
                    .where(or_(*outside))
                    .order_by(ChangeRow.revision)
                    .limit(CHUNK)
                )
            )
        )
        if last is None:
            return 0
        # The window's older end by revision: every change up to `last` is outside it
        # (ages grow with revisions), so one range delete takes them.
        result = await connection.execute(delete(ChangeRow).where(ChangeRow.revision <= last))
        return result.rowcount or 0


# Other records pruned at each compaction, once they can no longer matter (token
# revocations of expired tokens): called with the time, they say how many went.
Prune = Callable[[datetime], Awaitable[int]]


class Compactor:
    """Compacts the log of `store` every `interval` seconds until cancelled, and runs the
    `prunes` each time."""

    def __init__(
        self, store: Store, window: Window, interval: float, prunes: Sequence[Prune] = ()
    ) -> None:
        self.store = store
        self.window = window
        self.interval = interval
        self.prunes = tuple(prunes)
        self.removed = 0  # rows deleted since the start: meshdns_changes_compacted_total

    async def run(self) -> None:
        while True:
            try:
                removed = await compact(self.store, self.window, datetime.now(UTC))
            except DatabaseUnavailable as error:
                log.debug("change log not compacted: %s", error)
            else:
                if removed:
                    self.removed += removed
                    log.info(
                        "compacted the change log: %d change(s) older than the window", removed
                    )
            await asyncio.sleep(self.interval)
