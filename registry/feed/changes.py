"""The change feed: every committed change to the registry, numbered in commit order.

The hazard (DESIGN, "Change feed"): a Postgres sequence hands out numbers at insert time,
but they become visible at commit time, so a reader that has seen revision 11 could later
see a commit of revision 10 and, having moved its cursor past 10, never read it.

The mechanism here makes that impossible by serialising revision assignment per commit.
Every write transaction's first statement is ``UPDATE registry_state SET revision =
revision + 1``: it takes that row's lock, held until commit, so one writer at a time
numbers its changes (the revisions after the one it found) and commits them before the
next writer can even read the counter. Revisions therefore become visible strictly in
order; a reader's "everything after R" can never skip one that commits later. SQLite has
one writer at a time anyway (BEGIN IMMEDIATE). The price is that writes to one registry do
not run in parallel, which a control plane's write rate easily affords.

On Postgres the writer's transaction ends with ``NOTIFY``, delivered at commit; readers
``LISTEN`` and poll as a fallback. In one process, writers also wake readers directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.errors import SchemaOutdated
from registry.feed.backoff import Backoff
from registry.feed.states import Change
from registry.models import ChangeRow, RegistryStateRow

log = logging.getLogger("meshdns.feed")

CHANNEL = "meshdns_changes"


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A change made in a write transaction, numbered when the transaction records it."""

    kind: str
    mesh: str
    name: str
    deleted: bool = False


async def record_changes(
    connection: AsyncConnection,
    first_revision: int,
    changes: Sequence[PendingChange],
    now: datetime,
) -> int:
    """Number `changes` from `first_revision` on, store them and notify readers at commit.

    The caller holds the registry_state row lock and has already moved the counter to
    `first_revision`; this moves it to the last revision used, which it returns.
    """
    if not changes:
        # Nothing to number (a sync batch that only moved its cursor, say): give the
        # revision back, so the registry's revision stays its last change's.
        await connection.execute(
            update(RegistryStateRow)
            .where(RegistryStateRow.id == 1)
            .values(revision=first_revision - 1)
        )
        return first_revision - 1
    last = first_revision + len(changes) - 1
    await connection.execute(
        insert(ChangeRow),
        [
            {
                "revision": first_revision + offset,
                "kind": change.kind,
                "mesh": change.mesh,
                "name": change.name,
                "deleted": change.deleted,
                "committed_at": now,
            }
            for offset, change in enumerate(changes)
        ],
    )
    if last != first_revision:
        await connection.execute(
            update(RegistryStateRow).where(RegistryStateRow.id == 1).values(revision=last)
        )
    if connection.dialect.name == "postgresql":
        # Delivered when (and only if) the transaction commits.
        await connection.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": str(last)},
        )
    return last


class FeedGap(Exception):
    """The log does not hold what follows a reader's cursor, so following it would miss
    changes: a reader must read the registry whole again (a follower reloads, a sync
    worker resyncs).

    ``reason`` is one of
    - ``compacted``: the changes after the cursor were compacted away (the reader fell
      behind the kept window, or started late on an old registry);
    - ``ahead``: the cursor is past the registry's revision: the database lost revisions
      the reader saw (a failover to a standby that lagged, a restore of an older copy);
    - ``diverged``: the change at the cursor is not the one the reader saw (the same, after
      the database went on writing new revisions with the old numbers).
    """

    def __init__(self, reason: str, after: int, head: int) -> None:
        self.reason = reason
        self.after = after
        self.head = head
        super().__init__(
            {
                "compacted": f"the changes after revision {after} are no longer kept "
                f"(the registry is at {head})",
                "ahead": f"revision {after} is past the registry's revision {head}: "
                "the database lost revisions",
                "diverged": f"the change at revision {after} is not the one read before: "
                "the database lost revisions and numbered new ones alike",
            }[reason]
        )


async def read_revision(connection: AsyncConnection) -> int:
    """The registry's revision: its last committed change's."""
    revision = await connection.scalar(
        select(RegistryStateRow.revision).where(RegistryStateRow.id == 1)
    )
    if revision is None:
        raise SchemaOutdated("the registry_state row is missing; run `meshdns migrate`")
    return int(revision)


async def read_changes(
    connection: AsyncConnection, after: int, limit: int, mark: datetime | None = None
) -> list[Change]:
    """The changes after revision `after`, oldest first, at most `limit` of them.

    Raises FeedGap when they do not follow on from `after` (see there); `mark`, the commit
    time of the change at `after` as the reader saw it, also catches a diverged one. The
    registry's revision is read first, so the check holds at any isolation level: every
    change up to it is committed, and stays visible unless compacted away.
    """
    head = await read_revision(connection)
    rows = (
        await connection.execute(
            select(
                ChangeRow.revision,
                ChangeRow.kind,
                ChangeRow.mesh,
                ChangeRow.name,
                ChangeRow.deleted,
                ChangeRow.committed_at,
            )
            .where(ChangeRow.revision >= after)
            .order_by(ChangeRow.revision)
            .limit(limit + 1)
        )
    ).all()
    if rows and rows[0][0] == after:
        # The change at the cursor is still kept: it must be the one the reader saw.
        if mark is not None and _instant(rows[0][5]) != _instant(mark):
            raise FeedGap("diverged", after, head)
        rows = rows[1:]
    changes = [
        Change(row[0], row[1], row[2], row[3], bool(row[4]), committed_at=row[5])
        for row in rows[:limit]
    ]
    if changes and changes[0].revision == after + 1:
        return changes
    if not changes and head <= after:
        if head < after:
            raise FeedGap("ahead", after, head)
        return []
    raise FeedGap("compacted", after, head)


def _instant(when: datetime) -> datetime:
    """`when` comparable whichever way the database handed it back (SQLite: naive UTC)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class Listener:
    """Calls `wake` whenever a Postgres NOTIFY says the registry changed.

    Keeps its own connection, reconnecting with backoff; readers poll as well, so a
    lost notification only delays them until the next poll.
    """

    def __init__(self, database_url: str, wake: Callable[[], None]) -> None:
        url = make_url(database_url).set(drivername="postgresql+asyncpg")
        # What the engine's own connections are opened with, by the same dialect: several
        # hosts (``?host=A:5432&host=B:5432``) and ``target_session_attrs`` included, so
        # LISTEN follows the primary wherever the pool does.
        _, self._connect = url.get_dialect()().create_connect_args(url)
        self._wake = wake
        self.connected = False

    async def run(self) -> None:
        import asyncpg  # only Postgres deployments need it

        backoff = Backoff()
        while True:
            try:
                connection = await asyncpg.connect(**self._connect, timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                log.debug("LISTEN connection failed: %s", error)
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            try:
                await self._listen(connection)
            finally:
                self.connected = False
                connection.terminate()

    async def _listen(self, connection: Any) -> None:
        """Listen on `connection` until it is lost."""
        import asyncpg

        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        await connection.add_listener(CHANNEL, lambda *_: self._wake())
        self.connected = True
        # A change may have committed while we were not listening.
        self._wake()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), 2.0)
            if lost.is_set():
                return
            # The termination listener does not fire for a peer that vanished; ask.
            try:
                await connection.fetchval("SELECT 1", timeout=2)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return
