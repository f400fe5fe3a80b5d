"""Reading registry state for snapshots, in the caller's transaction: all of it, or what
the changes after a revision touched.

What is read here is only what a snapshot needs (addresses, ports, readiness, VIPs), from
the normalised columns: no resource JSON is parsed on this path.

The reader does not trust that every writer validated: a row it cannot read (an address
with an IPv6 scope stored by an older meshdns, say) is left out as if it were gone and
reported in ``unreadable``; the rest of the registry keeps flowing. It is never taken for
a lost database.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from ipaddress import IPv4Address, IPv6Address
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.errors import SchemaOutdated
from registry.feed.changes import read_changes
from registry.feed.states import (
    DataplaneState,
    EgressState,
    FeedBatch,
    InboundState,
    IngressState,
    UnreadableRow,
    Vip,
)
from registry.models import (
    DataplaneInsightRow,
    DataplaneRow,
    InboundRow,
    IngressServiceRow,
    MeshRow,
    RegistryStateRow,
    TrafficPermissionRow,
    VipRow,
    ZoneEgressRow,
    ZoneIngressRow,
)
from registry.snapshot import IPAddress, TrafficRule

K = TypeVar("K")
Unreadable = list[UnreadableRow]

# Keys per IN list: well under every database's limit on bound parameters.
_CHUNK = 500


async def read_revision(connection: AsyncConnection) -> int:
    revision = await connection.scalar(
        select(RegistryStateRow.revision).where(RegistryStateRow.id == 1)
    )
    if revision is None:
        raise SchemaOutdated("the registry_state row is missing; run `meshdns migrate`")
    return int(revision)


async def read_meshes(
    connection: AsyncConnection,
    names: Collection[str] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[str, bool]:
    """Whether each mesh has mTLS on, by name; all meshes, or those of `names` that exist."""
    from registry.schema import Mesh

    query = select(MeshRow.name, MeshRow.spec)
    found: dict[str, bool] = {}
    for where in _in(MeshRow.name, names):
        for name, spec in await connection.execute(query.where(*where)):
            try:
                found[name] = Mesh.model_validate(spec).mtls_enabled
            except ValueError as error:
                _report(unreadable, "Mesh", name, error)
    return found


def _report(unreadable: Unreadable | None, kind: str, key: str, error: Exception) -> None:
    if unreadable is not None:
        reason = str(error).replace("\n", " ")
        unreadable.append(UnreadableRow(kind, key, reason[:300]))


async def read_dataplanes(
    connection: AsyncConnection,
    keys: Collection[tuple[str, str]] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[tuple[str, str], DataplaneState]:
    """Dataplanes by (mesh, name): all of them, or those of `keys` that exist."""
    query = (
        select(
            MeshRow.name,
            DataplaneRow.name,
            DataplaneRow.address,
            DataplaneRow.advertised_address,
            InboundRow.service,
            InboundRow.address,
            InboundRow.port,
            InboundRow.ready,
            DataplaneInsightRow.online,
        )
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .outerjoin(InboundRow, InboundRow.dataplane_id == DataplaneRow.id)
        .outerjoin(DataplaneInsightRow, DataplaneInsightRow.dataplane_id == DataplaneRow.id)
        .order_by(DataplaneRow.id, InboundRow.position)
    )
    rows: dict[tuple[str, str], list[Any]] = {}
    for where in _in(tuple_(MeshRow.name, DataplaneRow.name), keys):
        for row in await connection.execute(query.where(*where)):
            rows.setdefault((row[0], row[1]), []).append(row)
    states: dict[tuple[str, str], DataplaneState] = {}
    for key, found in rows.items():
        try:
            states[key] = _dataplane(key, found)
        except ValueError as error:
            _report(unreadable, "Dataplane", f"{key[0]}/{key[1]}", error)
    return states


def parse_address(text: str) -> IPAddress:
    """An address as stored (validated and normalised on the way in); ValueError if it is
    none that DNS can answer (an IPv6 address with a %scope, say).

    inet_pton is C: several times faster than ipaddress's own parser, which dominated
    reading a large registry.
    """
    try:
        return IPv4Address(inet_pton(AF_INET, text))
    except OSError:
        pass
    try:
        return IPv6Address(inet_pton(AF_INET6, text))
    except OSError:
        raise ValueError(f"address {text[:60]!r} is not an IPv4 or IPv6 address") from None


def _dataplane(key: tuple[str, str], rows: list[Any]) -> DataplaneState:
    first = rows[0]
    addresses: dict[str, IPAddress] = {}

    def parse(text: str) -> IPAddress:
        # Most inbounds share their dataplane's address: parse each address once.
        address = addresses.get(text)
        if address is None:
            address = addresses[text] = parse_address(text)
        return address

    return DataplaneState(
        mesh=key[0],
        name=key[1],
        address=parse(first[2]),
        advertised=parse(first[3]) if first[3] else None,
        inbounds=tuple(
            InboundState(service=row[4], address=parse(row[5]), port=row[6], ready=bool(row[7]))
            for row in rows
            if row[4] is not None
        ),
        # No insight row: never connected by an agent, a static registration.
        online=first[8] is None or bool(first[8]),
    )


async def read_vips(
    connection: AsyncConnection, keys: Collection[tuple[str, str]] | None = None
) -> dict[tuple[str, str], Vip]:
    """The VIPs in use by (mesh, service): all, or those of `keys` that have one."""
    query = select(VipRow.mesh, VipRow.service, VipRow.address, VipRow.address6).where(
        VipRow.released_at.is_(None)
    )
    found: dict[tuple[str, str], Vip] = {}
    for where in _in(tuple_(VipRow.mesh, VipRow.service), keys):
        for mesh, service, address, address6 in await connection.execute(query.where(*where)):
            found[(mesh, service)] = stored_vip(address, address6)
    return found


def stored_vip(address: int, address6: str | None) -> Vip:
    """A VIP from its stored columns (IPv4 as an integer, IPv6 as text)."""
    return Vip(IPv4Address(address), IPv6Address(address6) if address6 else None)


def _in(column: Any, keys: Collection[K] | None) -> Iterator[tuple[ColumnElement[bool], ...]]:
    """WHERE clauses covering `keys` in chunks; one empty clause for "all"."""
    if keys is None:
        yield ()
        return
    ordered = list(keys)
    for start in range(0, len(ordered), _CHUNK):
        yield (column.in_(ordered[start : start + _CHUNK]),)


async def read_ingresses(
    connection: AsyncConnection,
    names: Collection[str] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[str, IngressState]:
    """Zone ingresses by name, with the services they offer: all, or those of `names`."""
    from registry.schema import ZoneIngress

    found: dict[str, IngressState] = {}
    for where in _in(ZoneIngressRow.name, names):
        rows = await connection.execute(
            select(ZoneIngressRow.id, ZoneIngressRow.name, ZoneIngressRow.spec).where(*where)
        )
        by_id = {row_id: (name, spec) for row_id, name, spec in rows}
        offered: dict[int, set[tuple[str, str]]] = {}
        for chunk in _in(IngressServiceRow.ingress_id, list(by_id)):
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
                _report(unreadable, "ZoneIngress", name, error)
    return found


async def read_egresses(
    connection: AsyncConnection,
    names: Collection[str] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[str, EgressState]:
    from registry.schema import ZoneEgress

    found: dict[str, EgressState] = {}
    for where in _in(ZoneEgressRow.name, names):
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
                _report(unreadable, "ZoneEgress", name, error)
    return found


async def read_permissions(
    connection: AsyncConnection,
    keys: Collection[tuple[str, str]] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[tuple[str, str], TrafficRule]:
    """Traffic permissions by (mesh, name), as rules on kuma.io/service."""
    from registry.schema import TrafficPermission

    query = select(MeshRow.name, TrafficPermissionRow.name, TrafficPermissionRow.spec).join(
        MeshRow, MeshRow.id == TrafficPermissionRow.mesh_id
    )
    found: dict[tuple[str, str], TrafficRule] = {}
    for where in _in(tuple_(MeshRow.name, TrafficPermissionRow.name), keys):
        for mesh, name, spec in await connection.execute(query.where(*where)):
            try:
                permission = TrafficPermission.model_validate(spec)
            except ValueError as error:
                _report(unreadable, "TrafficPermission", f"{mesh}/{name}", error)
                continue
            found[(mesh, name)] = TrafficRule(
                sources=frozenset(source.service for source in permission.sources),
                destinations=frozenset(target.service for target in permission.destinations),
            )
    return found


FEED_BATCH = 1000  # changes a reader takes at a time


async def read_all(connection: AsyncConnection) -> FeedBatch:
    """The whole registry in the caller's (repeatable-read) transaction."""
    unreadable: list[UnreadableRow] = []
    revision = await read_revision(connection)
    meshes = await read_meshes(connection, unreadable=unreadable)
    dataplanes = await read_dataplanes(connection, unreadable=unreadable)
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
        unreadable=tuple(unreadable),
    )


async def read_batch(
    connection: AsyncConnection, after: int, limit: int = FEED_BATCH
) -> FeedBatch | None:
    """The changes after `after` and the current state of everything they touch.

    The VIPs read are those of the services the changed dataplanes serve and the changed
    ingresses offer now; the view lets go of the others' itself (RegistryView.apply).
    """
    changes = await read_changes(connection, after, limit)
    if not changes:
        return None
    mesh_names = {change.mesh for change in changes if change.kind == "Mesh"}
    dataplane_keys = {
        (change.mesh, change.name) for change in changes if change.kind == "Dataplane"
    }
    unreadable: list[UnreadableRow] = []
    meshes = await read_meshes(connection, mesh_names, unreadable)
    dataplanes = await read_dataplanes(connection, dataplane_keys, unreadable)
    ingress_names = {change.name for change in changes if change.kind == "ZoneIngress"}
    egress_names = {change.name for change in changes if change.kind == "ZoneEgress"}
    permission_keys = {
        (change.mesh, change.name) for change in changes if change.kind == "TrafficPermission"
    }
    ingresses = await read_ingresses(connection, ingress_names, unreadable) if ingress_names else {}
    egresses = await read_egresses(connection, egress_names, unreadable) if egress_names else {}
    rules = (
        await read_permissions(connection, permission_keys, unreadable) if permission_keys else {}
    )
    services = {
        (state.mesh, service) for state in dataplanes.values() for service in state.services
    }
    services |= {key for ingress in ingresses.values() for key in ingress.services}
    vips = await read_vips(connection, services)
    return FeedBatch(
        revision=changes[-1].revision,
        changes=tuple(changes),
        meshes={name: meshes.get(name) for name in mesh_names},
        dataplanes={key: dataplanes.get(key) for key in dataplane_keys},
        vips={key: vips.get(key) for key in services},
        ingresses={name: ingresses.get(name) for name in ingress_names},
        egresses={name: egresses.get(name) for name in egress_names},
        permissions={key: rules.get(key) for key in permission_keys},
        unreadable=tuple(unreadable),
    )
