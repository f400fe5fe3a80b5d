"""Dataplane liveness: agents' heartbeats, online/offline transitions and clean-up.

Heartbeats are cheap on purpose. A heartbeat only notes the time in this process's
memory; every interval the noted times are written in one batch (``last_seen``, no
revision, no feed change). Only a *transition* is a registry write with a feed change,
because only a transition changes DNS: a connect (online), a sweep that finds
``last_seen`` older than the offline window (offline), a heartbeat from a dataplane the
registry holds offline (online again), and the clean-up deletions.

Several control-plane replicas on one database stay right: each flushes the heartbeats
it received, and any of them may sweep. A sweep re-reads its candidates inside a write
transaction, which holds the registry_state row lock (registry/feed/changes.py), so two replicas
never flip or delete the same dataplane twice. A replica flushes before it sweeps, and the
flush interval is well inside the offline window, so one replica never judges offline a
dataplane whose heartbeats another replica holds unwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.errors import DatabaseUnavailable, NotFound
from registry.models import DataplaneInsightRow, DataplaneRow, MeshRow
from registry.schema import Dataplane
from registry.store import Store, Unchanged
from registry.write_rules import check_write

log = logging.getLogger("meshdns.liveness")

DataplaneKey = tuple[str, str]  # (mesh, name)

ORIGIN_AGENT = "agent"  # created by `meshdns dp run`: deleted soon after it goes offline
ORIGIN_API = "api"  # created by PUT or apply: kept, garbage-collected after a long offline
# Seconds after a connect during which this process vouches that the dataplane exists.
JUST_CONNECTED = 30.0
# A tick this much late (or half an interval, if more) means this process fell behind.
STALL = 0.5


@dataclass(frozen=True, slots=True)
class LivenessSettings:
    """The liveness windows."""

    heartbeat_interval: float
    # Missed intervals before a dataplane is offline.
    offline_after: int
    # How long an agent-created dataplane stays (offline) before it is deleted.
    agent_cleanup_delay: float
    # How long an API-created dataplane may stay offline before it is deleted.
    offline_gc_age: float

    @property
    def offline_window(self) -> float:
        return self.heartbeat_interval * self.offline_after


@dataclass(frozen=True, slots=True)
class Insight:
    """A dataplane's liveness as `dataplanes+insights` shows it."""

    origin: str
    online: bool
    connected_at: datetime
    disconnected_at: datetime | None
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class SweepResult:
    offline: tuple[DataplaneKey, ...] = ()
    deleted: tuple[DataplaneKey, ...] = ()


def _now() -> datetime:
    return datetime.now(UTC)


_KEY = tuple_(MeshRow.name, DataplaneRow.name)


class Liveness:
    """Heartbeats in memory, batched to the database; transitions as feed changes."""

    def __init__(
        self,
        store: Store,
        settings: LivenessSettings,
        *,
        on_change: Callable[[], None] | None = None,
        known: Callable[[DataplaneKey], bool | None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._on_change = on_change or (lambda: None)
        # Whether the follower's view holds the dataplane online (None: not there).
        self._known = known or (lambda key: None)
        self._beats: dict[DataplaneKey, datetime] = {}
        # Dataplanes this process registered (connect) lately, with when: a heartbeat for
        # one needs no look in the database while the follower's view may not have it yet
        # (a burst of registrations held the pool's every connection, heartbeats queued
        # behind them, and agents went offline). Later, the view says whether it exists.
        self._connected: dict[DataplaneKey, float] = {}
        self.heartbeats = 0  # received since start, for the bench
        self.stalls = 0  # ticks this process came late to: sweeps put off
        self.flushes = 0

    # -- agent requests -------------------------------------------------------------------

    async def connect(self, dataplane: Dataplane) -> bool:
        """Register (create or update) an agent's dataplane and mark it online; True if new."""
        check_write(self.store.mode, "Dataplane")
        async with self.store.writing() as transaction:
            created = await self.store.put_in(transaction, dataplane)
            connection, now = transaction.connection, transaction.now
            dataplane_id = await _dataplane_id(connection, (dataplane.mesh, dataplane.name))
            assert dataplane_id is not None
            changed = await connection.execute(
                update(DataplaneInsightRow)
                .where(DataplaneInsightRow.dataplane_id == dataplane_id)
                .values(online=True, connected_at=now, disconnected_at=None, last_seen=now)
            )
            if changed.rowcount == 0:
                await connection.execute(
                    insert(DataplaneInsightRow).values(
                        dataplane_id=dataplane_id,
                        origin=ORIGIN_AGENT if created else ORIGIN_API,
                        online=True,
                        connected_at=now,
                        last_seen=now,
                    )
                )
        self._beats.pop((dataplane.mesh, dataplane.name), None)
        self._connected[(dataplane.mesh, dataplane.name)] = time.monotonic()
        self._on_change()
        return created

    async def heartbeat(self, key: DataplaneKey) -> None:
        """Note that the dataplane's agent is alive; NotFound when it is not registered.

        Costs a dictionary write when the follower's view knows the dataplane online; the
        database is asked only about a dataplane the view does not know (yet).
        """
        check_write(self.store.mode, "Dataplane")
        self.heartbeats += 1
        known = self._known(key)
        if known is None and not self._just_connected(key):
            async with self.store.reading() as connection:
                if await _dataplane_id(connection, key) is None:
                    raise NotFound(f'dataplane "{key[1]}" not found in mesh "{key[0]}"')
        # One the registry holds offline comes back online at the next flush.
        self._beats[key] = _now()

    def alive(self, key: DataplaneKey) -> None:
        """Note that the dataplane's agent is alive now (it is being answered)."""
        self._beats[key] = _now()

    def _just_connected(self, key: DataplaneKey) -> bool:
        connected = self._connected.get(key)
        return connected is not None and time.monotonic() - connected < JUST_CONNECTED

    async def disconnect(self, key: DataplaneKey) -> bool:
        """The agent is leaving: delete an agent-created dataplane, mark others offline.

        True when the dataplane was deleted.
        """
        check_write(self.store.mode, "Dataplane")
        self._beats.pop(key, None)
        self._connected.pop(key, None)
        async with self.store.writing() as transaction:
            connection = transaction.connection
            row = (
                await connection.execute(
                    select(DataplaneRow.id, DataplaneInsightRow.origin)
                    .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
                    .outerjoin(
                        DataplaneInsightRow, DataplaneInsightRow.dataplane_id == DataplaneRow.id
                    )
                    .where(_KEY == key)
                )
            ).one_or_none()
            if row is None:
                raise NotFound(f'dataplane "{key[1]}" not found in mesh "{key[0]}"')
            dataplane_id, origin = row
            if origin == ORIGIN_AGENT:
                await self.store.delete_in(transaction, "Dataplane", *key)
            else:
                await connection.execute(
                    update(DataplaneInsightRow)
                    .where(DataplaneInsightRow.dataplane_id == dataplane_id)
                    .values(online=False, disconnected_at=transaction.now)
                )
                transaction.record("Dataplane", *key)
        self._on_change()
        return origin == ORIGIN_AGENT

    # -- background work ------------------------------------------------------------------

    async def flush(self) -> int:
        """Write the heartbeats noted since the last flush; bring offline ones back online.

        One statement for all of them, and no feed change unless one was offline.
        """
        beats, self._beats = self._beats, {}
        stale = time.monotonic() - JUST_CONNECTED
        self._connected = {key: at for key, at in self._connected.items() if at > stale}
        if not beats:
            return 0
        try:
            async with self.store.engine.begin() as connection:
                await connection.execute(
                    update(DataplaneInsightRow)
                    .where(
                        DataplaneInsightRow.dataplane_id
                        == select(DataplaneRow.id)
                        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
                        .where(
                            MeshRow.name == bindparam("k_mesh"),
                            DataplaneRow.name == bindparam("k_name"),
                        )
                        .scalar_subquery(),
                        DataplaneInsightRow.last_seen < bindparam("seen"),
                    )
                    .values(last_seen=bindparam("seen")),
                    [
                        {"k_mesh": mesh, "k_name": name, "seen": seen}
                        for (mesh, name), seen in beats.items()
                    ],
                )
        except Exception:
            # Keep the newest times for the next try (database away, usually).
            for key, seen in beats.items():
                if self._beats.get(key, seen) <= seen:
                    self._beats[key] = seen
            raise
        self.flushes += 1
        if any(self._known(key) is not True for key in beats):
            await self._revive(list(beats))
        return len(beats)

    async def _revive(self, keys: Collection[DataplaneKey]) -> None:
        """Mark online those of `keys` the registry holds offline (their agents came back)."""
        async with self.store.reading() as connection:
            offline = await _select_keys(connection, keys, DataplaneInsightRow.online.is_(False))
        if not offline:
            return
        try:
            async with self.store.writing() as transaction:
                connection = transaction.connection
                # Again under the write lock: another replica may have revived or deleted them.
                revived = await _select_keys(
                    connection, [key for _, key in offline], DataplaneInsightRow.online.is_(False)
                )
                for dataplane_id, key in revived:
                    await connection.execute(
                        update(DataplaneInsightRow)
                        .where(DataplaneInsightRow.dataplane_id == dataplane_id)
                        .values(online=True, connected_at=transaction.now, disconnected_at=None)
                    )
                    transaction.record("Dataplane", *key)
                if not revived:
                    raise Unchanged
        except Unchanged:
            return
        self._on_change()

    async def sweep(self, now: datetime | None = None) -> SweepResult:
        """Mark offline the dataplanes past the window; delete those offline long enough."""
        now = now or _now()
        settings = self.settings
        stale = DataplaneInsightRow.online.is_(True) & (
            DataplaneInsightRow.last_seen < now - timedelta(seconds=settings.offline_window)
        )
        expired = DataplaneInsightRow.online.is_(False) & (
            (
                (DataplaneInsightRow.origin == ORIGIN_AGENT)
                & (
                    DataplaneInsightRow.disconnected_at
                    < now - timedelta(seconds=settings.agent_cleanup_delay)
                )
            )
            | (
                (DataplaneInsightRow.origin != ORIGIN_AGENT)
                & (
                    DataplaneInsightRow.disconnected_at
                    < now - timedelta(seconds=settings.offline_gc_age)
                )
            )
        )
        # A read first: most sweeps find nothing and need no write lock.
        async with self.store.reading() as connection:
            if not await _select_keys(connection, None, stale | expired, limit=1):
                return SweepResult()
        offline: list[DataplaneKey] = []
        deleted: list[DataplaneKey] = []
        try:
            async with self.store.writing() as transaction:
                connection = transaction.connection
                # Again under the write lock: another replica may have just done it. And
                # not one whose heartbeat this process holds unwritten: under load a flush
                # waits for the database while heartbeats go on arriving.
                fresh = now - timedelta(seconds=settings.offline_window)
                for dataplane_id, key in await _select_keys(connection, None, stale):
                    if self._beats.get(key, fresh) > fresh:
                        continue
                    await connection.execute(
                        update(DataplaneInsightRow)
                        .where(DataplaneInsightRow.dataplane_id == dataplane_id)
                        .values(online=False, disconnected_at=transaction.now)
                    )
                    transaction.record("Dataplane", *key)
                    offline.append(key)
                for _, key in await _select_keys(connection, None, expired):
                    await self.store.delete_in(transaction, "Dataplane", *key)
                    deleted.append(key)
                if not offline and not deleted:
                    raise Unchanged  # roll back: no revision spent on nothing
        except Unchanged:
            return SweepResult()
        for key in offline:
            log.info("dataplane %s/%s is offline (no heartbeat)", *key)
        for key in deleted:
            log.info("dataplane %s/%s deleted: offline too long", *key)
        self._on_change()
        return SweepResult(tuple(offline), tuple(deleted))

    async def run(self) -> None:
        """Flush and sweep every heartbeat interval until cancelled.

        The first sweep waits one offline window after start: a control plane that was
        down (or is new) must give agents the chance to reach it before it judges them.
        So does a sweep after this process fell behind (its own tick woke late):
        heartbeats queued behind a burst of work are not an agent's silence.
        """
        loop = asyncio.get_running_loop()
        interval = self.settings.heartbeat_interval
        sweep_from = loop.time() + self.settings.offline_window
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            # How late this tick woke: the time the event loop was too busy to run it, and
            # so too busy to take heartbeats. (A slow flush is not counted: heartbeats that
            # arrive meanwhile are in memory, and the sweep spares those.)
            behind = loop.time() - due
            if behind > max(interval / 2, STALL):
                self.stalls += 1
                sweep_from = max(sweep_from, loop.time() + self.settings.offline_window)
            try:
                await self.flush()
                if loop.time() >= sweep_from:
                    await self.sweep()
            except DatabaseUnavailable as error:
                log.warning("liveness: database unreachable, will retry: %s", error)
            except Exception:
                log.exception("liveness: flush or sweep failed")

    async def close(self) -> None:
        """Write what is noted, so the next replica or start sees it."""
        with contextlib.suppress(Exception):
            await self.flush()

    # -- reads ----------------------------------------------------------------------------

    async def insights(self, mesh: str, names: Iterable[str]) -> dict[str, Insight]:
        """The liveness of the named dataplanes of `mesh` (those ever connected)."""
        wanted = list(names)
        found: dict[str, Insight] = {}
        if not wanted:
            return found
        async with self.store.reading() as connection:
            rows = await connection.execute(
                select(
                    DataplaneRow.name,
                    DataplaneInsightRow.origin,
                    DataplaneInsightRow.online,
                    DataplaneInsightRow.connected_at,
                    DataplaneInsightRow.disconnected_at,
                    DataplaneInsightRow.last_seen,
                )
                .join(DataplaneRow, DataplaneRow.id == DataplaneInsightRow.dataplane_id)
                .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
                .where(MeshRow.name == mesh, DataplaneRow.name.in_(wanted))
            )
            for name, origin, online, connected, disconnected, seen in rows:
                # Heartbeats this replica holds unwritten are newer than the database.
                seen = max(seen, self._beats.get((mesh, name), seen))
                found[name] = Insight(origin, bool(online), connected, disconnected, seen)
        return found


async def _dataplane_id(connection: AsyncConnection, key: DataplaneKey) -> int | None:
    return await connection.scalar(
        select(DataplaneRow.id).join(MeshRow, MeshRow.id == DataplaneRow.mesh_id).where(_KEY == key)
    )


async def _select_keys(
    connection: AsyncConnection,
    keys: Collection[DataplaneKey] | None,
    condition: Any,
    limit: int | None = None,
) -> list[tuple[int, DataplaneKey]]:
    """(dataplane id, key) of the insights matching `condition`, among `keys` if given."""
    query = (
        select(DataplaneInsightRow.dataplane_id, MeshRow.name, DataplaneRow.name)
        .join(DataplaneRow, DataplaneRow.id == DataplaneInsightRow.dataplane_id)
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .where(condition)
        .order_by(DataplaneInsightRow.dataplane_id)
        .limit(limit)
    )
    if keys is None:
        return [(row[0], (row[1], row[2])) for row in await connection.execute(query)]
    found = []
    ordered = list(keys)
    for start in range(0, len(ordered), 500):
        chunk = query.where(_KEY.in_(ordered[start : start + 500]))
        found += [(row[0], (row[1], row[2])) for row in await connection.execute(chunk)]
    return found
