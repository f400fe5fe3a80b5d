"""zone -> global: a zone's own dataplanes (named ``<zone>.<name>`` on global and labelled
``kuma.io/zone``), with their liveness; its ingresses, with the services they offer
computed from the zone's dataplanes; its egresses; its own MeshServices and
MeshExternalServices (registry/sync/service_model.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.feed.states import Change
from registry.models import (
    ChangeRow,
    DataplaneInsightRow,
    DataplaneRow,
    InboundRow,
    MeshRow,
    ZoneEgressRow,
    ZoneIngressRow,
)
from registry.schema import (
    SERVICE_TAG,
    ZONE_TAG,
    AvailableService,
    Dataplane,
    ZoneEgress,
    ZoneIngress,
)
from registry.store import Store, Transaction
from registry.store.bulk import Replica
from registry.sync.copies import ResourceCopier
from registry.sync.cursors import CursorMoved, read_cursor, write_cursor, zone_source
from registry.sync.reports import PUSH, BatchReport
from registry.sync.service_model import ZoneToGlobalKinds
from registry.write_rules import Origin

log = logging.getLogger("meshdns.sync")

DISPLAY_NAME_TAG = "kuma.io/display-name"
MAX_NAME = 253


def global_name(zone: str, name: str) -> str:
    """A zone's resource as named on global (Kuma's ``<zone>.<name>``)."""
    return f"{zone}.{name}"


@dataclass(frozen=True, slots=True)
class _ZoneState:
    dataplanes: dict[tuple[str, str], Replica]
    gone_dataplanes: set[tuple[str, str]]
    ingresses: dict[str, ZoneIngress]
    gone_ingresses: set[str]
    egresses: dict[str, ZoneEgress]
    gone_egresses: set[str]
    offered: tuple[AvailableService, ...] | None
    # A resync: everything of the zone was read, so what global holds of it beyond is gone.
    whole: bool = False


class ZoneToGlobal:
    """Replicates zone `zone`'s own resources into the global store, a batch at a time."""

    def __init__(self, zone: str, zone_store: Store, global_store: Store, batch: int) -> None:
        self.zone = zone
        self.zone_store = zone_store
        self.global_store = global_store
        self.batch = batch
        # The ingresses' offered services are recomputed after a restart (a killed worker
        # may have moved the cursor past dataplane changes without recomputing them).
        self._offer_due = True
        self._copies = ResourceCopier(ZoneToGlobalKinds(zone), global_store)

    @property
    def resyncs(self) -> int:
        return self._copies.resyncs

    async def step(self) -> BatchReport | None:
        """Replicate the next batch of the zone's changes to global; None when caught up."""
        started = time.perf_counter()
        source = zone_source(self.zone)
        async with self.global_store.reading() as connection:
            cursor = await read_cursor(connection, source)
        async with self.zone_store.reading() as connection:
            changes, whole = await self._copies.changes_after(
                connection, cursor, self.batch, f"zone {self.zone}'s log"
            )
            caught_up = whole is not None or len(changes) < self.batch
            kinds = {change.kind for change in changes}
            offer = caught_up and (
                self._offer_due or whole is not None or bool(kinds & {"Dataplane", "ZoneIngress"})
            )
            sweep = self._copies.sweeping(changes, caught_up)
            if not changes and not offer and not sweep:
                return None
            state = await self._read_zone(connection, changes, offer, whole=whole is not None)
            carried = await self._copies.read(connection, changes, sweep)
        revision = whole if whole is not None else changes[-1].revision if changes else cursor
        report = BatchReport(PUSH, len(changes), revision)
        try:
            async with self.global_store.writing(Origin.REPLICATION) as transaction:
                if await read_cursor(transaction.connection, source) != cursor:
                    raise CursorMoved
                report.written = await self._write_global(transaction, state)
                report.written.update(await self._copies.write(transaction, carried))
                await write_cursor(transaction.connection, source, report.revision, transaction.now)
        except CursorMoved:
            return BatchReport(PUSH, 0, cursor)
        if offer:
            self._offer_due = False
        self._copies.committed(carried)
        report.seconds = time.perf_counter() - started
        return report

    async def _read_zone(
        self, connection: AsyncConnection, changes: list[Change], offer: bool, whole: bool
    ) -> _ZoneState:
        keys = {(c.mesh, c.name) for c in changes if c.kind == "Dataplane"}
        ingress_names = {c.name for c in changes if c.kind == "ZoneIngress"}
        egress_names = {c.name for c in changes if c.kind == "ZoneEgress"}
        if whole:
            dataplanes = await _read_all_dataplanes(connection)
            keys = set(dataplanes)
        elif keys:
            dataplanes = await _read_dataplanes(
                connection, changes[0].revision - 1, changes[-1].revision
            )
        else:
            dataplanes = {}
        # With the offer recomputed, all of them, with what they offer now.
        ingresses = await _read_own(
            connection, ZoneIngressRow, ZoneIngress, None if offer else ingress_names, self.zone
        )
        egresses = await _read_own(
            connection, ZoneEgressRow, ZoneEgress, None if whole else egress_names, self.zone
        )
        offered = await _offered_services(connection) if offer else None
        return _ZoneState(
            dataplanes=dataplanes,
            gone_dataplanes=keys - dataplanes.keys(),
            ingresses=ingresses,
            gone_ingresses=ingress_names - ingresses.keys(),
            egresses=egresses,
            gone_egresses=egress_names - egresses.keys(),
            offered=offered,
            whole=whole,
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
        if state.whole:
            # Every dataplane of the zone was read: any other of its replicas is gone.
            kept = {(replica.dataplane.mesh, replica.dataplane.name) for replica in replicas}
            gone |= await _replicas_of(connection, zone) - kept
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
        if state.whole:
            stale = await connection.scalars(
                select(ZoneEgressRow.name).where(
                    ZoneEgressRow.zone == zone, ZoneEgressRow.name.not_in(list(egresses))
                )
            )
            gone_others += [("ZoneEgress", name) for name in stale]
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


async def _read_all_dataplanes(connection: AsyncConnection) -> dict[tuple[str, str], Replica]:
    """Every dataplane of the zone's own (not replicated into it), with liveness."""
    rows = await connection.execute(
        select(MeshRow.name, DataplaneRow.name, DataplaneRow.spec, DataplaneInsightRow.online)
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .outerjoin(DataplaneInsightRow, DataplaneInsightRow.dataplane_id == DataplaneRow.id)
        .where(DataplaneRow.zone.is_(None))
    )
    return {
        (mesh, name): Replica(
            Dataplane.model_validate(spec), None if online is None else bool(online)
        )
        for mesh, name, spec, online in rows
    }


async def _replicas_of(connection: AsyncConnection, zone: str) -> set[tuple[str, str]]:
    """The (mesh, name) of the dataplanes global holds of `zone`."""
    rows = await connection.execute(
        select(MeshRow.name, DataplaneRow.name)
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .where(DataplaneRow.zone == zone)
    )
    return {(mesh, name) for mesh, name in rows}


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
