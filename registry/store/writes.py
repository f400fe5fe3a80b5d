"""Writing resources in an open write transaction, each with its VIP side effects.

Every write here records its change in the transaction, so it enters the change feed and
passes the write rules. A service gets its VIP when a dataplane serves it or an ingress
offers it (where the caller allocates VIPs, `vips`); its VIP goes into quarantine once no
dataplane serves it and no ingress offers it any more (registry/store/vips.py). A
resource of a service kind (MeshService and its kin) gets its VIP when it is written and
gives it back when it is deleted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.errors import NotFound
from registry.models import (
    DataplaneRow,
    InboundRow,
    InboundTagRow,
    IngressServiceRow,
    MeshRow,
)
from registry.schema import Dataplane, Mesh, MeshScoped, Resource, Zone, ZoneEgress, ZoneIngress
from registry.store import bulk
from registry.store.bulk import Replica
from registry.store.dataplane_rows import dataplane_columns, inbound_rows
from registry.store.kept_whole import MESH_SCOPED, SERVICE_KINDS, TABLES, KeptWhole
from registry.store.transactions import Transaction
from registry.store.vips import VipSettings, allocate_vip, release_resource_vips, release_vips

NO_MESH = ""  # the change feed's mesh of a resource that belongs to no mesh


def feed_mesh(resource: Resource) -> str:
    """The mesh a change to `resource` is recorded under."""
    if isinstance(resource, Mesh):
        return resource.name
    if isinstance(resource, MeshScoped):
        return resource.mesh
    return NO_MESH


async def put_resource(
    transaction: Transaction, resource: Resource, vips: VipSettings | None
) -> bool:
    """Create or replace `resource`; True when it was created. With `vips`, the services
    it serves or offers get their VIPs."""
    connection, now = transaction.connection, transaction.now
    if isinstance(resource, Mesh):
        created = await _put_mesh(connection, resource, now)
    elif isinstance(resource, Dataplane):
        created = await _put_dataplane(connection, resource, now, vips)
    else:
        created = await _put_kept_whole(connection, resource, now, vips)
    transaction.record(resource.type, feed_mesh(resource), resource.name)
    return created


async def put_replicas(
    transaction: Transaction, replicas: Sequence[Replica], vips: VipSettings | None
) -> None:
    """Create or replace many dataplanes in a few bulk statements (their meshes exist)."""
    await bulk.put_dataplanes(transaction.connection, replicas, transaction.now, vips)
    for replica in replicas:
        transaction.record("Dataplane", replica.dataplane.mesh, replica.dataplane.name)


async def delete_resource(transaction: Transaction, kind: str, mesh: str, name: str) -> bool:
    """Delete a resource (a mesh with its dataplanes); False when there was none."""
    if kind == "Mesh":
        return await _delete_mesh(transaction, name)
    if kind == "Dataplane":
        return await _delete_dataplane(transaction, mesh, name)
    return await _delete_kept_whole(transaction, kind, mesh, name)


async def delete_replicas(
    transaction: Transaction, keys: Collection[tuple[str, str]], vips: VipSettings | None
) -> None:
    """Delete those of the dataplanes (mesh, name) that exist, in a few bulk statements."""
    for mesh, name in await bulk.delete_dataplanes(
        transaction.connection, keys, transaction.now, vips
    ):
        transaction.record("Dataplane", mesh, name, deleted=True)


# -- meshes and dataplanes -------------------------------------------------------------


async def _put_mesh(connection: AsyncConnection, mesh: Mesh, now: datetime) -> bool:
    mesh_id = await connection.scalar(select(MeshRow.id).where(MeshRow.name == mesh.name))
    if mesh_id is None:
        await connection.execute(
            insert(MeshRow).values(
                name=mesh.name, spec=mesh.dump(), created_at=now, modified_at=now
            )
        )
        return True
    await connection.execute(
        update(MeshRow).where(MeshRow.id == mesh_id).values(spec=mesh.dump(), modified_at=now)
    )
    return False


async def _put_dataplane(
    connection: AsyncConnection, dataplane: Dataplane, now: datetime, vips: VipSettings | None
) -> bool:
    mesh_id = await connection.scalar(select(MeshRow.id).where(MeshRow.name == dataplane.mesh))
    if mesh_id is None:
        raise NotFound(
            f'mesh "{dataplane.mesh}" does not exist: create it before dataplane "{dataplane.name}"'
        )
    values = {**dataplane_columns(dataplane), "modified_at": now}
    dataplane_id = await connection.scalar(
        select(DataplaneRow.id).where(
            DataplaneRow.mesh_id == mesh_id, DataplaneRow.name == dataplane.name
        )
    )
    old_services: set[str] = set()
    created = dataplane_id is None
    if dataplane_id is None:
        inserted = await connection.execute(
            insert(DataplaneRow)
            .values(mesh_id=mesh_id, name=dataplane.name, created_at=now, **values)
            .returning(DataplaneRow.id)
        )
        dataplane_id = inserted.scalar_one()
    else:
        old_services = set(
            await connection.scalars(
                select(InboundRow.service).where(InboundRow.dataplane_id == dataplane_id)
            )
        )
        await connection.execute(
            update(DataplaneRow).where(DataplaneRow.id == dataplane_id).values(**values)
        )
        # Their tags go with them (ON DELETE CASCADE).
        await connection.execute(delete(InboundRow).where(InboundRow.dataplane_id == dataplane_id))
    await _insert_inbounds(connection, dataplane_id, dataplane)
    if vips is not None:
        for service in dataplane.services:
            await allocate_vip(connection, dataplane.mesh, service, vips, now)
    await release_vips(connection, dataplane.mesh, old_services - set(dataplane.services), now)
    return created


async def _insert_inbounds(
    connection: AsyncConnection, dataplane_id: int, dataplane: Dataplane
) -> None:
    inbounds = dataplane.networking.inbound
    if not inbounds:
        return
    rows = inbound_rows(dataplane_id, dataplane)
    ids = (
        await connection.execute(
            insert(InboundRow).returning(InboundRow.id, sort_by_parameter_order=True), rows
        )
    ).scalars()
    tags = [
        {"inbound_id": inbound_id, "key": key, "value": value}
        for inbound_id, inbound in zip(ids, inbounds, strict=True)
        for key, value in inbound.tags.items()
    ]
    await connection.execute(insert(InboundTagRow), tags)


# -- resources kept whole ----------------------------------------------------------------


async def _mesh_id(connection: AsyncConnection, mesh: str, what: str) -> int:
    mesh_id = await connection.scalar(select(MeshRow.id).where(MeshRow.name == mesh))
    if mesh_id is None:
        raise NotFound(f'mesh "{mesh}" does not exist: create it before {what}')
    return int(mesh_id)


async def _put_kept_whole(
    connection: AsyncConnection, resource: KeptWhole, now: datetime, vips: VipSettings | None
) -> bool:
    """Create or replace a resource kept whole (with its VIP, for a service kind)."""
    table = TABLES[resource.type]
    where = [table.name == resource.name]
    spec = resource.dump()
    if not isinstance(resource, MeshScoped):
        spec.pop("mesh", None)  # a generator's, as Kuma's documentation writes it: ignored
    values: dict[str, Any] = {"spec": spec, "modified_at": now}
    if isinstance(resource, MeshScoped):
        noun = "traffic permission" if resource.type == "TrafficPermission" else resource.type
        mesh_id = await _mesh_id(connection, resource.mesh, f'{noun} "{resource.name}"')
        where.append(table.mesh_id == mesh_id)
        values["mesh_id"] = mesh_id
    elif isinstance(resource, Zone):
        values["enabled"] = resource.enabled
    elif isinstance(resource, ZoneIngress | ZoneEgress):
        values["zone"] = resource.zone
    row_id = await connection.scalar(select(table.id).where(*where))
    created = row_id is None
    if row_id is None:
        inserted = await connection.execute(
            insert(table).values(name=resource.name, created_at=now, **values).returning(table.id)
        )
        row_id = inserted.scalar_one()
    else:
        await connection.execute(update(table).where(table.id == row_id).values(**values))
    if isinstance(resource, ZoneIngress):
        await _put_ingress_services(connection, row_id, resource, now, vips)
    elif resource.type in SERVICE_KINDS and vips is not None:
        assert isinstance(resource, MeshScoped)
        await allocate_vip(connection, resource.mesh, resource.name, vips, now, resource.type)
    return created


async def _put_ingress_services(
    connection: AsyncConnection,
    ingress_id: int,
    ingress: ZoneIngress,
    now: datetime,
    vips: VipSettings | None,
) -> None:
    """The services an ingress offers, and the VIPs this zone gives them."""
    old = {
        (mesh, service)
        for mesh, service in await connection.execute(
            select(IngressServiceRow.mesh, IngressServiceRow.service).where(
                IngressServiceRow.ingress_id == ingress_id
            )
        )
    }
    await connection.execute(
        delete(IngressServiceRow).where(IngressServiceRow.ingress_id == ingress_id)
    )
    offered: dict[tuple[str, str], int] = {}
    for available in ingress.available_services:
        key = (available.mesh, available.service)
        offered[key] = offered.get(key, 0) + available.instances
    if offered:
        await connection.execute(
            insert(IngressServiceRow),
            [
                {"ingress_id": ingress_id, "mesh": m, "service": s, "instances": n}
                for (m, s), n in offered.items()
            ],
        )
    if vips is not None:
        for mesh, service in sorted(offered.keys() - old):
            await allocate_vip(connection, mesh, service, vips, now)
    for mesh, service in sorted(old - offered.keys()):
        await release_vips(connection, mesh, {service}, now)


# -- deletes ---------------------------------------------------------------------------


async def _delete_mesh(transaction: Transaction, name: str) -> bool:
    connection = transaction.connection
    mesh_id = await connection.scalar(select(MeshRow.id).where(MeshRow.name == name))
    if mesh_id is None:
        return False
    # The database cascades; the feed gets a tombstone for each of its resources too.
    for kind, table in (("Dataplane", DataplaneRow), *((k, TABLES[k]) for k in MESH_SCOPED)):
        for member in await connection.scalars(select(table.name).where(table.mesh_id == mesh_id)):
            transaction.record(kind, name, member, deleted=True)
    await connection.execute(delete(MeshRow).where(MeshRow.id == mesh_id))
    await release_vips(connection, name, None, transaction.now)
    await release_resource_vips(connection, name, transaction.now)
    transaction.record("Mesh", name, name, deleted=True)
    return True


async def _delete_dataplane(transaction: Transaction, mesh: str, name: str) -> bool:
    connection = transaction.connection
    dataplane_id = await connection.scalar(
        select(DataplaneRow.id)
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .where(MeshRow.name == mesh, DataplaneRow.name == name)
    )
    if dataplane_id is None:
        return False
    services = set(
        await connection.scalars(
            select(InboundRow.service).where(InboundRow.dataplane_id == dataplane_id)
        )
    )
    await connection.execute(delete(DataplaneRow).where(DataplaneRow.id == dataplane_id))
    await release_vips(connection, mesh, services, transaction.now)
    transaction.record("Dataplane", mesh, name, deleted=True)
    return True


async def _delete_kept_whole(transaction: Transaction, kind: str, mesh: str, name: str) -> bool:
    table = TABLES[kind]
    connection = transaction.connection
    where = [table.name == name]
    if kind in MESH_SCOPED:
        where.append(table.mesh_id.in_(select(MeshRow.id).where(MeshRow.name == mesh)))
    row_id = await connection.scalar(select(table.id).where(*where))
    if row_id is None:
        return False
    offered: list[tuple[str, str]] = []
    if kind == "ZoneIngress":
        offered = [
            (mesh, service)
            for mesh, service in await connection.execute(
                select(IngressServiceRow.mesh, IngressServiceRow.service).where(
                    IngressServiceRow.ingress_id == row_id
                )
            )
        ]
    await connection.execute(delete(table).where(table.id == row_id))
    for offered_mesh, service in offered:
        await release_vips(connection, offered_mesh, {service}, transaction.now)
    if kind in SERVICE_KINDS:
        await release_resource_vips(connection, mesh, transaction.now, kind, name)
    transaction.record(kind, mesh if kind in MESH_SCOPED else NO_MESH, name, deleted=True)
    return True
