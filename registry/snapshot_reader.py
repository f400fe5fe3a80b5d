"""Reading the registry into an immutable Snapshot, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from types import MappingProxyType
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.errors import SchemaOutdated
from registry.models import DataplaneRow, InboundRow, MeshRow, RegistryStateRow, VipRow
from registry.schema import Mesh
from registry.snapshot import Endpoint, IPAddress, MeshView, ServiceView, Snapshot

Vips = Mapping[tuple[str, str], tuple[IPv4Address, IPv6Address | None]]


async def read_snapshot(connection: AsyncConnection) -> Snapshot:
    """The whole registry as a Snapshot; run it in one repeatable-read transaction."""
    revision = await read_revision(connection)
    meshes = (await connection.execute(select(MeshRow.name, MeshRow.spec))).all()
    dataplanes = (
        await connection.execute(
            select(MeshRow.name, DataplaneRow.address).join(
                MeshRow, MeshRow.id == DataplaneRow.mesh_id
            )
        )
    ).all()
    inbounds = (
        await connection.execute(
            select(
                MeshRow.name,
                DataplaneRow.name,
                DataplaneRow.advertised_address,
                InboundRow.service,
                InboundRow.address,
                InboundRow.port,
                InboundRow.ready,
            )
            .join(DataplaneRow, DataplaneRow.id == InboundRow.dataplane_id)
            .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        )
    ).all()
    vips = await active_vips(connection, None)
    return _build_snapshot(revision, meshes, dataplanes, inbounds, vips)


async def read_revision(connection: AsyncConnection) -> int:
    revision = await connection.scalar(
        select(RegistryStateRow.revision).where(RegistryStateRow.id == 1)
    )
    if revision is None:
        raise SchemaOutdated("the registry_state row is missing; run `meshdns migrate`")
    return int(revision)


async def active_vips(
    connection: AsyncConnection, mesh: str | None
) -> dict[tuple[str, str], tuple[IPv4Address, IPv6Address | None]]:
    """The VIPs in use, by (mesh, service); of one mesh, or of all when `mesh` is None."""
    query = select(VipRow.mesh, VipRow.service, VipRow.address, VipRow.address6).where(
        VipRow.released_at.is_(None)
    )
    if mesh is not None:
        query = query.where(VipRow.mesh == mesh)
    return {
        (row.mesh, row.service): (
            IPv4Address(row.address),
            IPv6Address(row.address6) if row.address6 else None,
        )
        for row in await connection.execute(query)
    }


def _build_snapshot(
    revision: int,
    meshes: Sequence[Any],
    dataplanes: Sequence[Any],
    inbounds: Sequence[Any],
    vips: Vips,
) -> Snapshot:
    endpoints: dict[tuple[str, str], list[Endpoint]] = {}
    dataplane_meshes: dict[IPAddress, str] = {}
    # Sorted, so that an address registered in two meshes maps to the same one every time.
    for mesh, address in sorted(dataplanes):
        dataplane_meshes.setdefault(ip_address(address), mesh)
    for mesh, dataplane, advertised, service, address, port, ready in sorted(
        inbounds, key=lambda row: (row[0], row[3], row[1], row[5])
    ):
        dataplane_meshes.setdefault(ip_address(address), mesh)
        endpoints.setdefault((mesh, service), []).append(
            Endpoint(
                dataplane=dataplane,
                address=ip_address(advertised or address),
                port=port,
                ready=bool(ready),
            )
        )
    services: dict[str, dict[str, ServiceView]] = {}
    for (mesh, service), service_endpoints in endpoints.items():
        vip, vip6 = vips.get((mesh, service), (None, None))
        services.setdefault(mesh, {})[service] = ServiceView(
            name=service, vip=vip, vip6=vip6, endpoints=tuple(service_endpoints)
        )
    views = {
        name: MeshView(
            name=name,
            mtls=Mesh.model_validate(spec).mtls_enabled,
            services=MappingProxyType(services.get(name, {})),
        )
        for name, spec in sorted(meshes, key=lambda row: row[0])
    }
    return Snapshot(
        revision=revision,
        meshes=MappingProxyType(views),
        dataplane_meshes=MappingProxyType(dataplane_meshes),
    )
