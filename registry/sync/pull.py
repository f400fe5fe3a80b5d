"""global -> zone: meshes, traffic permissions, every *other* enabled zone's ingresses,
and of Kuma's service model the other zones' MeshServices and what was created on global
(registry/sync/service_model.py). A zone never receives its own records back."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.feed.states import Change
from registry.models import MeshRow, TrafficPermissionRow, ZoneIngressRow, ZoneRow
from registry.schema import Mesh, TrafficPermission, ZoneIngress
from registry.store import Store, Transaction
from registry.sync.copies import ResourceCopier
from registry.sync.cursors import GLOBAL_SOURCE, CursorMoved, read_cursor, write_cursor
from registry.sync.reports import PULL, BatchReport
from registry.sync.service_model import GlobalToZoneKinds
from registry.write_rules import Origin


@dataclass(frozen=True, slots=True)
class _GlobalState:
    meshes: dict[str, Mesh]
    gone_meshes: set[str]
    permissions: dict[tuple[str, str], TrafficPermission]
    gone_permissions: set[tuple[str, str]]
    ingresses: dict[str, ZoneIngress]
    gone_ingresses: set[str]
    # A resync: everything global holds was read, so what the zone holds of it beyond is gone.
    whole: bool = False


class GlobalToZone:
    """Replicates what zone `zone` takes from the global store into it, a batch at a time."""

    def __init__(self, zone: str, zone_store: Store, global_store: Store, batch: int) -> None:
        self.zone = zone
        self.zone_store = zone_store
        self.global_store = global_store
        self.batch = batch
        self._copies = ResourceCopier(GlobalToZoneKinds(zone), zone_store)

    @property
    def resyncs(self) -> int:
        return self._copies.resyncs

    async def step(self) -> BatchReport | None:
        """Replicate the next batch of global's changes to the zone; None when caught up."""
        started = time.perf_counter()
        async with self.zone_store.reading() as connection:
            cursor = await read_cursor(connection, GLOBAL_SOURCE)
        async with self.global_store.reading() as connection:
            changes, whole = await self._copies.changes_after(
                connection, cursor, self.batch, f"global's log, for zone {self.zone}"
            )
            sweep = self._copies.sweeping(changes, whole is not None or len(changes) < self.batch)
            if not changes and not sweep and whole is None:
                return None
            state = await self._read_global(connection, changes, whole=whole is not None)
            carried = await self._copies.read(connection, changes, sweep)
        revision = whole if whole is not None else changes[-1].revision if changes else cursor
        report = BatchReport(PULL, len(changes), revision)
        try:
            async with self.zone_store.writing(Origin.REPLICATION) as transaction:
                if await read_cursor(transaction.connection, GLOBAL_SOURCE) != cursor:
                    raise CursorMoved
                report.written = await self._write_zone(transaction, state)
                report.written.update(await self._copies.write(transaction, carried))
                await write_cursor(
                    transaction.connection, GLOBAL_SOURCE, report.revision, transaction.now
                )
        except CursorMoved:
            return BatchReport(PULL, 0, cursor)
        self._copies.committed(carried)
        report.seconds = time.perf_counter() - started
        return report

    async def _read_global(
        self, connection: AsyncConnection, changes: list[Change], whole: bool = False
    ) -> _GlobalState:
        mesh_names = {c.mesh for c in changes if c.kind == "Mesh"}
        permission_keys = {(c.mesh, c.name) for c in changes if c.kind == "TrafficPermission"}
        ingress_names = {c.name for c in changes if c.kind == "ZoneIngress"}
        zone_names = {c.name for c in changes if c.kind == "Zone"}
        if whole:
            mesh_names = set(await connection.scalars(select(MeshRow.name)))
            permission_keys = {
                (mesh, name)
                for mesh, name in await connection.execute(
                    select(MeshRow.name, TrafficPermissionRow.name).join(
                        MeshRow, MeshRow.id == TrafficPermissionRow.mesh_id
                    )
                )
            }
            ingress_names = set(await connection.scalars(select(ZoneIngressRow.name)))
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
            whole=whole,
        )

    async def _write_zone(self, transaction: Transaction, state: _GlobalState) -> dict[str, int]:
        store = self.zone_store
        if state.whole:
            state = await self._beyond(transaction.connection, state)
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

    async def _beyond(self, connection: AsyncConnection, state: _GlobalState) -> _GlobalState:
        """`state`, read whole from global, with what the zone holds of global's beyond it
        taken as gone: meshes, traffic permissions, other zones' ingresses."""
        meshes = set(await connection.scalars(select(MeshRow.name)))
        permissions = {
            (mesh, name)
            for mesh, name in await connection.execute(
                select(MeshRow.name, TrafficPermissionRow.name).join(
                    MeshRow, MeshRow.id == TrafficPermissionRow.mesh_id
                )
            )
        }
        ingresses = set(
            await connection.scalars(
                select(ZoneIngressRow.name).where(
                    ZoneIngressRow.zone.is_not(None), ZoneIngressRow.zone != self.zone
                )
            )
        )
        return replace(
            state,
            gone_meshes=state.gone_meshes | (meshes - state.meshes.keys()),
            gone_permissions=state.gone_permissions | (permissions - state.permissions.keys()),
            gone_ingresses=state.gone_ingresses | (ingresses - state.ingresses.keys()),
        )
