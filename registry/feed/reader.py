"""Reading registry state for snapshots, in the caller's transaction: all of it, or what
the changes after a revision touched.

What is read is only what a snapshot needs (addresses, ports, readiness, VIPs), from the
normalised columns (dataplane_reader); of the resources kept whole as JSON, meshes,
ingresses and egresses here, permissions in permission_reader, Kuma's service model in
service_reader.

The reader does not trust that every writer validated: a row it cannot read (an address
with an IPv6 scope stored by an older meshdns, say) is left out as if it were gone and
reported in ``unreadable``; the rest of the registry keeps flowing. It is never taken for
a lost database.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.feed.changes import read_changes, read_revision
from registry.feed.dataplane_reader import parse_address, read_dataplanes, selected_by
from registry.feed.permission_reader import PERMISSION_KINDS, permission_key, read_permissions
from registry.feed.rows import Unreadable, in_chunks, report
from registry.feed.service_reader import (
    read_generators,
    read_service_vips,
    read_services,
    selector_tag_keys,
    selects_by_labels,
)
from registry.feed.states import (
    MESH_SERVICES_DISABLED,
    MESH_SERVICES_MODES,
    EgressState,
    FeedBatch,
    IngressState,
    MeshState,
    UnreadableRow,
    Vip,
)
from registry.meshservice.states import (
    HOSTNAME_GENERATOR,
    SERVICE_KINDS,
)
from registry.models import (
    LEGACY_VIP_KIND,
    ChangeRow,
    IngressServiceRow,
    MeshRow,
    VipRow,
    ZoneEgressRow,
    ZoneIngressRow,
)


async def read_meshes(
    connection: AsyncConnection,
    names: Collection[str] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[str, MeshState]:
    """Each mesh's mTLS and meshServices.mode, by name; all meshes, or those of `names`."""
    from registry.schema import Mesh

    query = select(MeshRow.name, MeshRow.spec)
    found: dict[str, MeshState] = {}
    for where in in_chunks(MeshRow.name, names):
        for name, spec in await connection.execute(query.where(*where)):
            try:
                mesh = Mesh.model_validate(spec)
            except ValueError as error:
                report(unreadable, "Mesh", name, error)
                continue
            mode = (mesh.mesh_services or {}).get("mode", MESH_SERVICES_DISABLED)
            # A mode Kuma does not know is its default, as an unset one is.
            if mode not in MESH_SERVICES_MODES:
                mode = MESH_SERVICES_DISABLED
            found[name] = MeshState(mtls=mesh.mtls_enabled, mesh_services=mode)
    return found


async def read_vips(
    connection: AsyncConnection, keys: Collection[tuple[str, str]] | None = None
) -> dict[tuple[str, str], Vip]:
    """The VIPs in use of legacy services by (mesh, service): all, or those of `keys` that
    have one."""
    query = select(VipRow.mesh, VipRow.service, VipRow.address, VipRow.address6).where(
        VipRow.released_at.is_(None), VipRow.kind == LEGACY_VIP_KIND
    )
    found: dict[tuple[str, str], Vip] = {}
    for where in in_chunks(tuple_(VipRow.mesh, VipRow.service), keys):
        for mesh, service, address, address6 in await connection.execute(query.where(*where)):
            found[(mesh, service)] = stored_vip(address, address6)
    return found


def stored_vip(address: int, address6: str | None) -> Vip:
    """A VIP from its stored columns (IPv4 as an integer, IPv6 as text)."""
    return Vip(IPv4Address(address), IPv6Address(address6) if address6 else None)


async def read_ingresses(
    connection: AsyncConnection,
    names: Collection[str] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[str, IngressState]:
    """Zone ingresses by name, with the services they offer: all, or those of `names`."""
    from registry.schema import ZoneIngress

    found: dict[str, IngressState] = {}
    for where in in_chunks(ZoneIngressRow.name, names):
        rows = await connection.execute(
            select(ZoneIngressRow.id, ZoneIngressRow.name, ZoneIngressRow.spec).where(*where)
        )
        by_id = {row_id: (name, spec) for row_id, name, spec in rows}
        offered: dict[int, set[tuple[str, str]]] = {}
        for chunk in in_chunks(IngressServiceRow.ingress_id, list(by_id)):
            services = await connection.execute(
                select(
                    IngressServiceRow.ingress_id, IngressServiceRow.mesh, IngressServiceRow.service
                ).where(*chunk)
            )
            for ingress_id, mesh, service in services:
                offered.setdefault(ingress_id, set()).add((mesh, service))
        for row_id, (name, spec) in by_id.items():
            try:
                ingress = ZoneIngress.model_validate(spec)
                address, port = ingress.networking.public
                found[name] = IngressState(
                    name=name,
                    zone=ingress.zone,
                    address=parse_address(address),
                    port=port,
                    services=frozenset(offered.get(row_id, ())),
                )
            except ValueError as error:
                report(unreadable, "ZoneIngress", name, error)
    return found


async def read_egresses(
    connection: AsyncConnection,
    names: Collection[str] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[str, EgressState]:
    from registry.schema import ZoneEgress

    found: dict[str, EgressState] = {}
    for where in in_chunks(ZoneEgressRow.name, names):
        for name, spec in await connection.execute(
            select(ZoneEgressRow.name, ZoneEgressRow.spec).where(*where)
        ):
            try:
                egress = ZoneEgress.model_validate(spec)
                found[name] = EgressState(
                    name=name,
                    zone=egress.zone,
                    address=parse_address(egress.networking.address),
                    port=egress.networking.port,
                )
            except ValueError as error:
                report(unreadable, "ZoneEgress", name, error)
    return found


FEED_BATCH = 1000  # changes a reader takes at a time


async def read_all(connection: AsyncConnection) -> FeedBatch:
    """The whole registry in the caller's (repeatable-read) transaction."""
    unreadable: list[UnreadableRow] = []
    revision = await read_revision(connection)
    meshes = await read_meshes(connection, unreadable=unreadable)
    services = await read_services(connection, unreadable=unreadable)
    # Only what the MeshServices select by: most select on kuma.io/service alone, which
    # every inbound row carries, so a large registry reads no tags and no labels.
    dataplanes = await read_dataplanes(
        connection,
        unreadable=unreadable,
        tag_keys=selector_tag_keys(services.values()),
        labels=selects_by_labels(services.values()),
    )
    vips = await read_vips(connection)
    return FeedBatch(
        revision,
        (),
        dict(meshes),
        dict(dataplanes),
        dict(vips),
        ingresses=dict(await read_ingresses(connection, unreadable=unreadable)),
        egresses=dict(await read_egresses(connection, unreadable=unreadable)),
        permissions=dict(await read_permissions(connection, unreadable=unreadable)),
        services=dict(services),
        service_vips=dict(await read_service_vips(connection)),
        generators=dict(await read_generators(connection, unreadable=unreadable)),
        unreadable=tuple(unreadable),
        mark=await connection.scalar(
            select(ChangeRow.committed_at).where(ChangeRow.revision == revision)
        ),
    )


async def read_batch(
    connection: AsyncConnection,
    after: int,
    limit: int = FEED_BATCH,
    mark: datetime | None = None,
) -> FeedBatch | None:
    """The changes after `after` and the current state of everything they touch.

    The VIPs read are those of the services the changed dataplanes serve and the changed
    ingresses offer now; the view lets go of the others' itself (RegistryView.apply).
    Changed dataplanes are read whole (every tag, their labels). So are the dataplanes a
    changed MeshService selects by tags other than kuma.io/service or by labels, which
    the cold load may not have read.
    """
    changes = await read_changes(connection, after, limit, mark)
    if not changes:
        return None
    mesh_names = {change.mesh for change in changes if change.kind == "Mesh"}
    dataplane_keys = {
        (change.mesh, change.name) for change in changes if change.kind == "Dataplane"
    }
    service_keys = {
        (change.kind, change.mesh, change.name)
        for change in changes
        if change.kind in SERVICE_KINDS
    }
    generator_names = {change.name for change in changes if change.kind == HOSTNAME_GENERATOR}
    unreadable: list[UnreadableRow] = []
    meshes = await read_meshes(connection, mesh_names, unreadable)
    services = await read_services(connection, service_keys, unreadable) if service_keys else {}
    dataplane_keys |= await selected_by(connection, services.values())
    dataplanes = await read_dataplanes(connection, dataplane_keys, unreadable)
    ingress_names = {change.name for change in changes if change.kind == "ZoneIngress"}
    egress_names = {change.name for change in changes if change.kind == "ZoneEgress"}
    permission_changes = {
        (change.kind, change.mesh, change.name)
        for change in changes
        if change.kind in PERMISSION_KINDS
    }
    ingresses = await read_ingresses(connection, ingress_names, unreadable) if ingress_names else {}
    egresses = await read_egresses(connection, egress_names, unreadable) if egress_names else {}
    rules = (
        await read_permissions(connection, permission_changes, unreadable)
        if permission_changes
        else {}
    )
    permission_keys = {
        (mesh, permission_key(kind, name)) for kind, mesh, name in permission_changes
    }
    legacy = {(state.mesh, service) for state in dataplanes.values() for service in state.services}
    legacy |= {key for ingress in ingresses.values() for key in ingress.services}
    vips = await read_vips(connection, legacy)
    service_vips = await read_service_vips(connection, service_keys) if service_keys else {}
    generators = (
        await read_generators(connection, generator_names, unreadable) if generator_names else {}
    )
    return FeedBatch(
        revision=changes[-1].revision,
        changes=tuple(changes),
        meshes={name: meshes.get(name) for name in mesh_names},
        dataplanes={key: dataplanes.get(key) for key in dataplane_keys},
        vips={key: vips.get(key) for key in legacy},
        ingresses={name: ingresses.get(name) for name in ingress_names},
        egresses={name: egresses.get(name) for name in egress_names},
        permissions={key: rules.get(key) for key in permission_keys},
        services={key: services.get(key) for key in service_keys},
        service_vips={key: service_vips.get(key) for key in service_keys},
        generators={name: generators.get(name) for name in generator_names},
        unreadable=tuple(unreadable),
        mark=changes[-1].committed_at,
    )
