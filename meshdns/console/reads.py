"""What the console reads from the store: a service's dataplanes, the zones' sync state
and a mesh's meshServices.mode.

The snapshot has no tags, liveness times, zone contacts or Mesh settings; these pages read
them from the database, a page at a time, and return plain values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from registry.agents.liveness import Insight
from registry.api.zones import ZONE_OFFLINE_AFTER
from registry.feed.states import MESH_SERVICES_DISABLED
from registry.schema import SERVICE_TAG, ZONE_TAG, Dataplane, Mesh, Zone
from registry.snapshot import Snapshot
from registry.store import Store
from registry.sync import GLOBAL_SOURCE, read_cursor, zone_source

# Liveness.insights: (mesh, dataplane names) -> the insights of those ever connected.
InsightReader = Callable[[str, Iterable[str]], Awaitable[Mapping[str, Insight]]]

MAX_ZONES = 1000


@dataclass(frozen=True, slots=True)
class DataplaneRow:
    """One inbound of a service on one dataplane, as the service page lists it."""

    name: str
    address: str
    advertised: str | None
    port: int
    tags: tuple[tuple[str, str], ...]
    ready: bool
    status: str  # Online, Offline, or Static (never connected by an agent)
    last_seen: datetime | None
    zone: str | None  # the kuma.io/zone label of a dataplane replicated to global


@dataclass(frozen=True, slots=True)
class DataplanePage:
    total: int
    rows: tuple[DataplaneRow, ...]


async def service_dataplanes(
    store: Store,
    insights: InsightReader,
    mesh: str,
    service: str,
    size: int,
    offset: int,
) -> DataplanePage:
    """The dataplanes of ``service`` in ``mesh`` by name, one row per inbound of it."""
    page = await store.list_dataplanes(mesh, size=size, offset=offset, tags={SERVICE_TAG: service})
    dataplanes = [item.resource for item in page.items if isinstance(item.resource, Dataplane)]
    known = await insights(mesh, [dataplane.name for dataplane in dataplanes])
    rows = [
        row
        for dataplane in dataplanes
        for row in _rows(dataplane, service, known.get(dataplane.name))
    ]
    return DataplanePage(total=page.total, rows=tuple(rows))


def _rows(dataplane: Dataplane, service: str, insight: Insight | None) -> list[DataplaneRow]:
    networking = dataplane.networking
    labels = dataplane.labels or {}
    status = "Static" if insight is None else "Online" if insight.online else "Offline"
    return [
        DataplaneRow(
            name=dataplane.name,
            address=inbound.address or networking.address,
            advertised=networking.advertised_address,
            port=inbound.port,
            tags=tuple(sorted(inbound.tags.items())),
            ready=inbound.ready,
            status=status,
            last_seen=insight.last_seen if insight else None,
            zone=labels.get(ZONE_TAG),
        )
        for inbound in networking.inbound
        if inbound.service == service
    ]


async def mesh_services_mode(store: Store, mesh: str) -> str:
    """The Mesh's meshServices.mode (Kuma's default, Disabled, when it sets none): whether
    MeshServices are generated from its dataplanes."""
    stored = (await store.get_mesh(mesh)).resource
    assert isinstance(stored, Mesh)
    return str((stored.mesh_services or {}).get("mode", MESH_SERVICES_DISABLED))


@dataclass(frozen=True, slots=True)
class ZoneRow:
    """A zone as the zones page shows it."""

    name: str
    enabled: bool
    status: str  # Online, Offline or Disabled; "Local" for this control plane's zone
    last_contact: datetime | None
    # How far the sync worker has replicated: the source's revision in this database
    # (a zone's revision on global; global's revision on a zone).
    replicated: int | None
    services: int  # services offered here through the zone's ingresses (a zone's view)


async def zones(store: Store, snapshot: Snapshot, mode: str, zone: str | None) -> list[ZoneRow]:
    """On global: every Zone with its last contact and status, and how far its changes are
    replicated. On a zone: this zone (how far global's changes are replicated into it) and
    the other zones whose ingresses offer services here. Standalone has none."""
    if mode == "global":
        return await _global_zones(store)
    if mode == "zone":
        return [await _this_zone(store, zone or "")] + _remote_zones(snapshot)
    return []


async def _global_zones(store: Store) -> list[ZoneRow]:
    page = await store.list_resources("Zone", None, size=MAX_ZONES)
    contacts = await store.zone_contacts()
    rows = []
    async with store.reading() as connection:
        for item in page.items:
            assert isinstance(item.resource, Zone)
            name = item.resource.name
            seen = contacts.get(name)
            rows.append(
                ZoneRow(
                    name=name,
                    enabled=item.resource.enabled,
                    status=_status(item.resource.enabled, seen),
                    last_contact=seen,
                    replicated=await read_cursor(connection, zone_source(name)),
                    services=0,
                )
            )
    return rows


async def _this_zone(store: Store, name: str) -> ZoneRow:
    async with store.reading() as connection:
        replicated = await read_cursor(connection, GLOBAL_SOURCE)
    return ZoneRow(
        name=name,
        enabled=True,
        status="Local",
        last_contact=None,
        replicated=replicated,
        services=0,
    )


def _remote_zones(snapshot: Snapshot) -> list[ZoneRow]:
    offered: dict[str, set[tuple[str, str]]] = {}
    for mesh in snapshot.meshes.values():
        for service in mesh.remote.values():
            for endpoint in service.endpoints:
                if endpoint.zone:
                    offered.setdefault(endpoint.zone, set()).add((mesh.name, service.name))
    return [
        ZoneRow(
            name=name,
            enabled=True,
            status="Offering services",
            last_contact=None,
            replicated=None,
            services=len(services),
        )
        for name, services in sorted(offered.items())
    ]


def _status(enabled: bool, last_seen: datetime | None) -> str:
    if not enabled:
        return "Disabled"
    if last_seen is None:
        return "Offline"
    age = (datetime.now(UTC) - last_seen).total_seconds()
    return "Online" if age < ZONE_OFFLINE_AFTER else "Offline"
