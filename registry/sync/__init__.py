"""The sync worker: replicates one zone's registry into the global store, and back.

Both directions follow a change feed from a cursor kept in the *target* database and
written in the same transaction as the rows it covers (DESIGN, "Multi-zone"). A worker
killed at any point therefore resumes exactly where the target says it is; a batch is
either all in, cursor included, or not at all. Each batch writes the source's *current*
state of what its changes touch, so applying a batch twice, or a state newer than the
batch's last revision, is harmless: the target ends equal to the source.

zone -> global: the zone's own dataplanes (named ``<zone>.<name>`` on global and labelled
``kuma.io/zone``), with their liveness; its ingresses, with the services they offer
computed from the zone's dataplanes; its egresses.

global -> zone: meshes, traffic permissions, and every *other* enabled zone's ingresses.
A zone never receives its own records back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import distinct, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.errors import DatabaseUnavailable
from registry.feed.changes import Change, Listener, read_changes
from registry.feed.reader import read_revision
from registry.models import (
    ChangeRow,
    DataplaneInsightRow,
    DataplaneRow,
    InboundRow,
    MeshRow,
    SyncCursorRow,
    TrafficPermissionRow,
    ZoneEgressRow,
    ZoneIngressRow,
    ZoneRow,
)
from registry.schema import (
    SERVICE_TAG,
    ZONE_TAG,
    AvailableService,
    Dataplane,
    Mesh,
    TrafficPermission,
    ZoneEgress,
    ZoneIngress,
)
from registry.store import Store, Transaction
from registry.store.bulk import Replica
from registry.write_rules import Origin

log = logging.getLogger("meshdns.sync")

DISPLAY_NAME_TAG = "kuma.io/display-name"
GLOBAL_SOURCE = "global"
MAX_NAME = 253


def zone_source(zone: str) -> str:
    return f"zone:{zone}"


def global_name(zone: str, name: str) -> str:
    """A zone's resource as named on global (Kuma's ``<zone>.<name>``)."""
    return f"{zone}.{name}"


async def read_cursor(connection: AsyncConnection, source: str) -> int:
    revision = await connection.scalar(
        select(SyncCursorRow.revision).where(SyncCursorRow.source == source)
    )
    return int(revision or 0)


async def write_cursor(
    connection: AsyncConnection, source: str, revision: int, now: datetime
) -> None:
    result = await connection.execute(
        update(SyncCursorRow)
        .where(SyncCursorRow.source == source)
        .values(revision=revision, updated_at=now)
    )
    if not result.rowcount:
        await connection.execute(
            insert(SyncCursorRow).values(source=source, revision=revision, updated_at=now)
        )


class _CursorMoved(Exception):
    """Another worker moved the cursor since we read it: drop this batch, read again."""


@dataclass(frozen=True, slots=True)
class SyncSettings:
    batch: int = 1000  # changes per transaction
    poll_interval: float = 1.0  # fallback when no NOTIFY wakes the worker
    contact_interval: float = 5.0  # how often global hears from a quiet zone
    progress: bool = True  # a progress bar while far behind


@dataclass(slots=True)
class BatchReport:
    """What one batch did, for the log's summary line."""

    direction: str
    changes: int
    revision: int
    written: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        parts = ", ".join(f"{count} {what}" for what, count in self.written.items() if count)
        return (
            f"{self.direction}: {self.changes} changes up to revision {self.revision} "
            f"({parts or 'nothing to write'}) in {self.seconds * 1000:.0f} ms"
        )


PUSH = "zone->global"
PULL = "global->zone"


@dataclass(slots=True)
class SyncStats:
    """What a worker has done since it started, for its metrics."""

    changes: dict[str, int] = field(default_factory=lambda: {PUSH: 0, PULL: 0})
    # Rows written, by (direction, what: dataplanes, meshes...).
    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=lambda: {PUSH: 0, PULL: 0})
    errors: int = 0  # rounds cut short by a lost database
    caught_up_at: float | None = None  # monotonic: when both directions last were
    lag: dict[str, int] | None = None  # the last measured (SyncWorker.lag)

    def record(self, report: BatchReport) -> None:
        self.changes[report.direction] = self.changes.get(report.direction, 0) + report.changes
        self.batches[report.direction] = self.batches.get(report.direction, 0) + 1
        for what, count in report.written.items():
            key = (report.direction, what)
            self.rows[key] = self.rows.get(key, 0) + count


class SyncWorker:
    """Replicates zone `zone` both ways between its store and the global store."""

    def __init__(
        self,
        zone: str,
        zone_store: Store,
        global_store: Store,
        settings: SyncSettings | None = None,
    ) -> None:
        self.zone = zone
        self.zone_store = zone_store
        self.global_store = global_store
        self.settings = settings or SyncSettings()
        # The ingresses' offered services are recomputed after a restart (a killed worker
        # may have moved the cursor past dataplane changes without recomputing them).
        self._offer_due = True
        self._wake = asyncio.Event()
        self._last_contact = 0.0
        self.stats = SyncStats()

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

    # -- zone -> global -----------------------------------------------------------------

    async def push(self) -> BatchReport | None:
        """Replicate the next batch of the zone's changes to global; None when caught up."""
        started = time.perf_counter()
        source = zone_source(self.zone)
        async with self.global_store.reading() as connection:
            cursor = await read_cursor(connection, source)
        async with self.zone_store.reading() as connection:
            changes = await read_changes(connection, cursor, self.settings.batch)
            caught_up = len(changes) < self.settings.batch
            kinds = {change.kind for change in changes}
            offer = caught_up and (self._offer_due or bool(kinds & {"Dataplane", "ZoneIngress"}))
            if not changes and not offer:
                return None
            state = await self._read_zone(connection, changes, offer)
        report = BatchReport(PUSH, len(changes), changes[-1].revision if changes else cursor)
        try:
            async with self.global_store.writing(Origin.REPLICATION) as transaction:
                if await read_cursor(transaction.connection, source) != cursor:
                    raise _CursorMoved
                report.written = await self._write_global(transaction, state)
                await write_cursor(transaction.connection, source, report.revision, transaction.now)
        except _CursorMoved:
            return BatchReport(PUSH, 0, cursor)
        if offer:
            self._offer_due = False
        report.seconds = time.perf_counter() - started
        return report

    async def _read_zone(
        self, connection: AsyncConnection, changes: list[Change], offer: bool
    ) -> _ZoneState:
        keys = {(c.mesh, c.name) for c in changes if c.kind == "Dataplane"}
        ingress_names = {c.name for c in changes if c.kind == "ZoneIngress"}
        egress_names = {c.name for c in changes if c.kind == "ZoneEgress"}
        dataplanes = (
            await _read_dataplanes(connection, changes[0].revision - 1, changes[-1].revision)
            if keys
            else {}
        )
        # With the offer recomputed, all of them, with what they offer now.
        ingresses = await _read_own(
            connection, ZoneIngressRow, ZoneIngress, None if offer else ingress_names, self.zone
        )
        egresses = await _read_own(connection, ZoneEgressRow, ZoneEgress, egress_names, self.zone)
        offered = await _offered_services(connection) if offer else None
        return _ZoneState(
            dataplanes=dataplanes,
            gone_dataplanes=keys - dataplanes.keys(),
            ingresses=ingresses,
            gone_ingresses=ingress_names - ingresses.keys(),
            egresses=egresses,
            gone_egresses=egress_names - egresses.keys(),
            offered=offered,
        )

    async def _write_global(self, transaction: Transaction, state: _ZoneState) -> dict[str, int]:
        connection = transaction.connection
        zone = self.zone
        meshes = set(await connection.scalars(select(MeshRow.name)))
        replicas: list[Replica] = []
        skipped = 0
        for (mesh, name), replica in sorted(state.dataplanes.items()):
            renamed = global_name(zone, name)
            if mesh not in meshes or len(renamed) > MAX_NAME:
                skipped += 1
                log.warning(
                    "not replicating dataplane %r of mesh %r: %s",
                    name,
                    mesh,
                    "the mesh is not on global" if mesh not in meshes else "name too long",
                )
                continue
            labels = {**(replica.dataplane.labels or {}), ZONE_TAG: zone, DISPLAY_NAME_TAG: name}
            dataplane = replica.dataplane.model_copy(update={"name": renamed, "labels": labels})
            replicas.append(Replica(dataplane, replica.online))
        gone = {(mesh, global_name(zone, name)) for mesh, name in state.gone_dataplanes}
        await self.global_store.put_dataplanes(transaction, replicas)
        await self.global_store.delete_dataplanes(transaction, gone)

        written = {"dataplanes": len(replicas), "dataplanes deleted": len(gone)}
        if skipped:
            written["dataplanes skipped"] = skipped
        offered = state.offered
        ingresses: dict[str, Any] = {}
        for name, ingress in state.ingresses.items():
            update_: dict[str, Any] = {"name": global_name(zone, name), "zone": zone}
            if offered is not None:
                update_["available_services"] = offered
            ingresses[global_name(zone, name)] = ingress.model_copy(update=update_)
        egresses = {
            global_name(zone, name): egress.model_copy(
                update={"name": global_name(zone, name), "zone": zone}
            )
            for name, egress in state.egresses.items()
        }
        written["ingresses"] = await self._replace(transaction, ingresses, ZoneIngressRow)
        written["egresses"] = await self._replace(transaction, egresses, ZoneEgressRow)
        gone_others = [
            ("ZoneIngress", global_name(zone, name)) for name in state.gone_ingresses
        ] + [("ZoneEgress", global_name(zone, name)) for name in state.gone_egresses]
        if offered is not None:
            # Every own ingress was read: any other of this zone's on global is gone.
            stale = await connection.scalars(
                select(ZoneIngressRow.name).where(
                    ZoneIngressRow.zone == zone, ZoneIngressRow.name.not_in(list(ingresses))
                )
            )
            gone_others += [("ZoneIngress", name) for name in stale]
        for kind, name in gone_others:
            await self.global_store.delete_in(transaction, kind, "", name)
        return written

    async def _replace(
        self, transaction: Transaction, resources: dict[str, Any], table: Any
    ) -> int:
        """Put those of `resources` whose spec differs from the target's; how many."""
        if not resources:
            return 0
        rows = await transaction.connection.execute(
            select(table.name, table.spec).where(table.name.in_(list(resources)))
        )
        current = {name: spec for name, spec in rows}
        written = 0
        for name, resource in resources.items():
            if current.get(name) != resource.dump():
                await self.global_store.put_in(transaction, resource)
                written += 1
        return written

    # -- global -> zone -----------------------------------------------------------------

    async def pull(self) -> BatchReport | None:
        """Replicate the next batch of global's changes to the zone; None when caught up."""
        started = time.perf_counter()
        async with self.zone_store.reading() as connection:
            cursor = await read_cursor(connection, GLOBAL_SOURCE)
        async with self.global_store.reading() as connection:
            changes = await read_changes(connection, cursor, self.settings.batch)
            if not changes:
                return None
            state = await self._read_global(connection, changes)
        report = BatchReport(PULL, len(changes), changes[-1].revision)
        try:
            async with self.zone_store.writing(Origin.REPLICATION) as transaction:
                if await read_cursor(transaction.connection, GLOBAL_SOURCE) != cursor:
                    raise _CursorMoved
                report.written = await self._write_zone(transaction, state)
                await write_cursor(
                    transaction.connection, GLOBAL_SOURCE, report.revision, transaction.now
                )
        except _CursorMoved:
            return BatchReport(PULL, 0, cursor)
        report.seconds = time.perf_counter() - started
        return report

    async def _read_global(
        self, connection: AsyncConnection, changes: list[Change]
    ) -> _GlobalState:
        mesh_names = {c.mesh for c in changes if c.kind == "Mesh"}
        permission_keys = {(c.mesh, c.name) for c in changes if c.kind == "TrafficPermission"}
        ingress_names = {c.name for c in changes if c.kind == "ZoneIngress"}
        zone_names = {c.name for c in changes if c.kind == "Zone"}
        meshes = {
            name: Mesh.model_validate(spec)
            for name, spec in await connection.execute(
                select(MeshRow.name, MeshRow.spec).where(MeshRow.name.in_(sorted(mesh_names)))
            )
        }
        permissions: dict[tuple[str, str], TrafficPermission] = {}
        if permission_keys:
            rows = await connection.execute(
                select(MeshRow.name, TrafficPermissionRow.name, TrafficPermissionRow.spec)
                .join(MeshRow, MeshRow.id == TrafficPermissionRow.mesh_id)
                .where(MeshRow.name.in_(sorted({mesh for mesh, _ in permission_keys})))
            )
            for mesh, name, spec in rows:
                if (mesh, name) in permission_keys:
                    permissions[(mesh, name)] = TrafficPermission.model_validate(spec)
        enabled = {
            name: bool(on)
            for name, on in await connection.execute(select(ZoneRow.name, ZoneRow.enabled))
        }
        query = select(ZoneIngressRow.name, ZoneIngressRow.spec)
        ingresses: dict[str, ZoneIngress] = {}
        if ingress_names or zone_names:
            rows = await connection.execute(
                query.where(
                    ZoneIngressRow.name.in_(sorted(ingress_names))
                    | ZoneIngressRow.zone.in_(sorted(zone_names))
                )
            )
            for name, spec in rows:
                ingresses[name] = ZoneIngress.model_validate(spec)
                ingress_names.add(name)
        visible = {
            name: ingress
            for name, ingress in ingresses.items()
            # Not our own, and not of a disabled zone.
            if ingress.zone != self.zone and enabled.get(ingress.zone or "", True)
        }
        return _GlobalState(
            meshes=meshes,
            gone_meshes=mesh_names - meshes.keys(),
            permissions=permissions,
            gone_permissions=permission_keys - permissions.keys(),
            ingresses=visible,
            gone_ingresses=ingress_names - visible.keys(),
        )

    async def _write_zone(self, transaction: Transaction, state: _GlobalState) -> dict[str, int]:
        store = self.zone_store
        for mesh_name in sorted(state.meshes):
            await store.put_in(transaction, state.meshes[mesh_name])
        for mesh_name in sorted(state.gone_meshes):
            await store.delete_in(transaction, "Mesh", mesh_name, mesh_name)
        existing = set(await transaction.connection.scalars(select(MeshRow.name)))
        permissions = 0
        for key, permission in sorted(state.permissions.items()):
            if key[0] in existing:
                await store.put_in(transaction, permission)
                permissions += 1
        for mesh, name in sorted(state.gone_permissions):
            await store.delete_in(transaction, "TrafficPermission", mesh, name)
        for ingress_name in sorted(state.ingresses):
            await store.put_in(transaction, state.ingresses[ingress_name])
        for name in sorted(state.gone_ingresses):
            await store.delete_in(transaction, "ZoneIngress", "", name)
        return {
            "meshes": len(state.meshes),
            "meshes deleted": len(state.gone_meshes),
            "traffic permissions": permissions,
            "traffic permissions deleted": len(state.gone_permissions),
            "ingresses": len(state.ingresses),
            "ingresses deleted": len(state.gone_ingresses),
        }

    # -- running ------------------------------------------------------------------------

    async def sync_once(self) -> list[BatchReport]:
        """Both directions until caught up (global first, so zone meshes exist)."""
        reports: list[BatchReport] = []
        for step, direction in ((self.pull, GLOBAL_SOURCE), (self.push, self.zone)):
            with self._progress(direction) as advance:
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

    @contextlib.contextmanager
    def _progress(self, direction: str) -> Any:
        """A progress bar (counts and rate) while a direction is far behind."""
        state: dict[str, Any] = {"bar": None, "done": 0}

        def advance(count: int) -> None:
            state["done"] += count
            if state["bar"] is not None:
                state["bar"].update(count)
            elif self.settings.progress and state["done"] >= self.settings.batch * 2:
                state["bar"] = _bar(direction, self.zone, state["done"])

        try:
            yield advance
        finally:
            if state["bar"] is not None:
                state["bar"].close()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Replicate until cancelled; a lost database is retried with backoff."""
        listeners = [
            asyncio.create_task(Listener(_url(store), self.wake).run())
            for store in (self.zone_store, self.global_store)
            if make_url(store.engine.url).get_backend_name() == "postgresql"
        ]
        backoff = 0.1
        try:
            while True:
                self._wake.clear()
                try:
                    await self.sync_once()
                    self.stats.caught_up_at = time.monotonic()
                    await self._contact()
                except DatabaseUnavailable as error:
                    self.stats.errors += 1
                    log.warning("sync paused, retrying in %.1f s: %s", backoff, error)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
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


def _bar(direction: str, zone: str, done: int) -> Any:
    from tqdm import tqdm

    label = f"{zone} -> global" if direction == zone else f"global -> {zone}"
    return tqdm(desc=label, initial=done, unit=" changes", unit_scale=True, mininterval=0.5)


@dataclass(frozen=True, slots=True)
class _ZoneState:
    dataplanes: dict[tuple[str, str], Replica]
    gone_dataplanes: set[tuple[str, str]]
    ingresses: dict[str, ZoneIngress]
    gone_ingresses: set[str]
    egresses: dict[str, ZoneEgress]
    gone_egresses: set[str]
    offered: tuple[AvailableService, ...] | None


@dataclass(frozen=True, slots=True)
class _GlobalState:
    meshes: dict[str, Mesh]
    gone_meshes: set[str]
    permissions: dict[tuple[str, str], TrafficPermission]
    gone_permissions: set[tuple[str, str]]
    ingresses: dict[str, ZoneIngress]
    gone_ingresses: set[str]


async def _read_dataplanes(
    connection: AsyncConnection, after: int, last: int
) -> dict[tuple[str, str], Replica]:
    """The dataplanes changed in revisions (after, last] that still exist, with liveness.

    Joined from the change feed itself, so a batch reads its rows by index, whatever
    the table's size.
    """
    changed = (
        select(ChangeRow.mesh, ChangeRow.name)
        .where(
            ChangeRow.revision > after, ChangeRow.revision <= last, ChangeRow.kind == "Dataplane"
        )
        .distinct()
        .subquery()
    )
    rows = await connection.execute(
        select(MeshRow.name, DataplaneRow.name, DataplaneRow.spec, DataplaneInsightRow.online)
        .select_from(changed)
        .join(MeshRow, MeshRow.name == changed.c.mesh)
        .join(
            DataplaneRow,
            (DataplaneRow.mesh_id == MeshRow.id) & (DataplaneRow.name == changed.c.name),
        )
        .outerjoin(DataplaneInsightRow, DataplaneInsightRow.dataplane_id == DataplaneRow.id)
    )
    return {
        (mesh, name): Replica(
            Dataplane.model_validate(spec), None if online is None else bool(online)
        )
        for mesh, name, spec, online in rows
    }


async def _read_own(
    connection: AsyncConnection,
    table: Any,
    model: type[ZoneIngress] | type[ZoneEgress],
    names: Collection[str] | None,
    zone: str,
) -> dict[str, Any]:
    """The zone's own ingresses or egresses (not those replicated into it from global)."""
    query = select(table.name, table.spec).where(table.zone.is_(None) | (table.zone == zone))
    if names is not None:
        if not names:
            return {}
        query = query.where(table.name.in_(sorted(names)))
    return {name: model.model_validate(spec) for name, spec in await connection.execute(query)}


async def _offered_services(connection: AsyncConnection) -> tuple[AvailableService, ...]:
    """What the zone's ingresses offer: each service with ready, online instances here."""
    rows = await connection.execute(
        select(MeshRow.name, InboundRow.service, func.count(distinct(InboundRow.dataplane_id)))
        .join(DataplaneRow, DataplaneRow.id == InboundRow.dataplane_id)
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .outerjoin(DataplaneInsightRow, DataplaneInsightRow.dataplane_id == DataplaneRow.id)
        .where(InboundRow.ready, DataplaneInsightRow.online.is_not(False))
        .group_by(MeshRow.name, InboundRow.service)
        .order_by(MeshRow.name, InboundRow.service)
    )
    return tuple(
        AvailableService.model_validate(
            {"tags": {SERVICE_TAG: service}, "instances": int(count), "mesh": mesh}
        )
        for mesh, service, count in rows
    )
