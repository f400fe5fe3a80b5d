"""Summaries the API and the console show, in the caller's transaction: a mesh's services
with their VIPs and counts, and each zone's last contact."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy import case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.feed.reader import stored_vip
from registry.models import (
    LEGACY_VIP_KIND,
    DataplaneInsightRow,
    DataplaneRow,
    InboundRow,
    MeshRow,
    VipRow,
    ZoneRow,
)


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """A service of a mesh as `GET /meshes/{mesh}/services` shows it."""

    name: str
    vip: IPv4Address | None
    vip6: IPv6Address | None
    endpoints: int  # ready inbounds of the service
    dataplanes: int
    # Endpoints by the zone of their dataplane (None: this registry's own).
    zones: Mapping[str | None, int] = field(default_factory=dict)


async def list_services(connection: AsyncConnection, mesh: str) -> list[ServiceSummary]:
    """The services of a mesh by name, with VIPs and counts. An unknown mesh has none."""
    counts = (
        select(
            InboundRow.service,
            DataplaneRow.zone,
            func.count(distinct(InboundRow.dataplane_id)),
            # Endpoints: ready inbounds of dataplanes not offline (as DNS counts them).
            func.sum(
                case((InboundRow.ready & DataplaneInsightRow.online.is_not(False), 1), else_=0)
            ),
        )
        .join(DataplaneRow, DataplaneRow.id == InboundRow.dataplane_id)
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .outerjoin(DataplaneInsightRow, DataplaneInsightRow.dataplane_id == DataplaneRow.id)
        .where(MeshRow.name == mesh)
        .group_by(InboundRow.service, DataplaneRow.zone)
    )
    rows = (await connection.execute(counts)).all()
    vips = {
        service: stored_vip(address, address6)
        for service, address, address6 in await connection.execute(
            select(VipRow.service, VipRow.address, VipRow.address6).where(
                VipRow.released_at.is_(None),
                VipRow.mesh == mesh,
                VipRow.kind == LEGACY_VIP_KIND,
            )
        )
    }
    # A dataplane is in one zone: the per-zone counts add up.
    by_service: dict[str, tuple[int, dict[str | None, int]]] = {}
    for service, zone, dataplanes, ready in rows:
        total, zones = by_service.get(service, (0, {}))
        zones[zone] = int(ready or 0)
        by_service[service] = (total + int(dataplanes), zones)
    summaries = []
    for service, (dataplanes, zones) in by_service.items():
        vip = vips.get(service)
        summaries.append(
            ServiceSummary(
                name=service,
                vip=vip.address if vip else None,
                vip6=vip.address6 if vip else None,
                endpoints=sum(zones.values()),
                dataplanes=dataplanes,
                zones=zones,
            )
        )
    return sorted(summaries, key=lambda summary: summary.name)


async def zone_contacts(connection: AsyncConnection) -> dict[str, datetime | None]:
    """Each zone's last contact from its sync worker."""
    rows = await connection.execute(select(ZoneRow.name, ZoneRow.last_seen))
    return {name: last_seen for name, last_seen in rows}
