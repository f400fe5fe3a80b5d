"""Reading registry state for snapshots, in the caller's transaction: all of it, or some keys.

What is read here is only what a snapshot needs (addresses, ports, readiness, VIPs), from
the normalised columns: no resource JSON is parsed on this path.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from ipaddress import IPv4Address, IPv6Address
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.errors import SchemaOutdated
from registry.models import (
    DataplaneInsightRow,
    DataplaneRow,
    InboundRow,
    MeshRow,
    RegistryStateRow,
    VipRow,
)
from registry.snapshot import IPAddress
from registry.view import DataplaneState, InboundState

Vip = tuple[IPv4Address | None, IPv6Address | None]
K = TypeVar("K")

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
    connection: AsyncConnection, names: Collection[str] | None = None
) -> dict[str, bool]:
    """Whether each mesh has mTLS on, by name; all meshes, or those of `names` that exist."""
    from registry.schema import Mesh

    query = select(MeshRow.name, MeshRow.spec)
    found: dict[str, bool] = {}
    for where in _in(MeshRow.name, names):
        for name, spec in await connection.execute(query.where(*where)):
            found[name] = Mesh.model_validate(spec).mtls_enabled
    return found


async def read_dataplanes(
    connection: AsyncConnection, keys: Collection[tuple[str, str]] | None = None
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
    return {key: _dataplane(key, found) for key, found in rows.items()}


def parse_address(text: str) -> IPAddress:
    """An address as stored (validated and normalised on the way in).

    inet_pton is C: several times faster than ipaddress's own parser, which dominated
    reading a large registry.
    """
    try:
        return IPv4Address(inet_pton(AF_INET, text))
    except OSError:
        return IPv6Address(inet_pton(AF_INET6, text))


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
            found[(mesh, service)] = (
                IPv4Address(address),
                IPv6Address(address6) if address6 else None,
            )
    return found


async def active_vips(connection: AsyncConnection, mesh: str) -> dict[tuple[str, str], Vip]:
    """The VIPs in use in one mesh, by (mesh, service)."""
    query = select(VipRow.service, VipRow.address, VipRow.address6).where(
        VipRow.released_at.is_(None), VipRow.mesh == mesh
    )
    return {
        (mesh, service): (IPv4Address(address), IPv6Address(address6) if address6 else None)
        for service, address, address6 in await connection.execute(query)
    }


def _in(column: Any, keys: Collection[K] | None) -> Iterator[tuple[ColumnElement[bool], ...]]:
    """WHERE clauses covering `keys` in chunks; one empty clause for "all"."""
    if keys is None:
        yield ()
        return
    ordered = list(keys)
    for start in range(0, len(ordered), _CHUNK):
        yield (column.in_(ordered[start : start + _CHUNK]),)
