"""What the console's pages show, worked out from memory: plain values, no HTML.

The overview, a mesh's services and the search read only the in-memory snapshot (the
same one DNS answers from), so they cost no database query. A mesh's service model
(MeshServices and their kin) is read from the registry view behind that snapshot, through
the ``status`` the API renders, so the page and the API say the same. Nothing here renders.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from registry.feed.view import RegistryView
from registry.meshservice.states import (
    MESH_EXTERNAL_SERVICE,
    MESH_MULTIZONE_SERVICE,
    MESH_SERVICE,
    ExternalServiceState,
    ServicePort,
)
from registry.meshservice.status import status_of
from registry.snapshot import Endpoint, IPAddress, MeshView, ServiceView, Snapshot

LOCAL_ZONE = "local"  # what endpoints of this control plane are called without --zone


@dataclass(frozen=True, slots=True)
class Counts:
    """How many of something are online (serving) and offline."""

    online: int = 0
    offline: int = 0

    @property
    def total(self) -> int:
        return self.online + self.offline


@dataclass(frozen=True, slots=True)
class MeshSummary:
    """One row of the overview."""

    name: str
    mtls: bool
    services: Counts
    dataplanes: Counts
    remote_services: int


@dataclass(frozen=True, slots=True)
class ZoneEndpoints:
    """A service's endpoints in one zone: how many there are and how many serve."""

    zone: str
    local: bool
    endpoints: int
    serving: int


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """One service of a mesh as its page lists it."""

    mesh: str
    name: str
    vip: str | None
    vip6: str | None
    zones: tuple[ZoneEndpoints, ...]
    # Offered by another zone only: reachable across zones, per client (TrafficPermission).
    remote_only: bool

    @property
    def serving(self) -> int:
        return sum(zone.serving for zone in self.zones)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A service found by name or by one of its addresses (its VIPs or endpoints)."""

    service: ServiceRow
    matched: str  # what matched: "name", or the address


def overview(snapshot: Snapshot) -> list[MeshSummary]:
    """Every mesh, with its services and dataplanes counted online and offline.

    A service is online while at least one of its endpoints serves (ready and online); a
    dataplane while it is online (a static registration, with no agent, always is).
    """
    return [_summary(mesh) for _, mesh in sorted(snapshot.meshes.items())]


def _summary(mesh: MeshView) -> MeshSummary:
    services = Counter(bool(service.ready_endpoints) for service in mesh.services.values())
    online: dict[str, bool] = {}
    for service in mesh.services.values():
        for endpoint in service.endpoints:
            online[endpoint.dataplane] = endpoint.online
    dataplanes = Counter(online.values())
    return MeshSummary(
        name=mesh.name,
        mtls=mesh.mtls,
        services=Counts(services[True], services[False]),
        dataplanes=Counts(dataplanes[True], dataplanes[False]),
        remote_services=sum(name not in mesh.services for name in mesh.remote),
    )


def services(snapshot: Snapshot, mesh: str, local_zone: str | None = None) -> list[ServiceRow]:
    """The services of ``mesh`` by name, its own and those other zones offer in it."""
    view = snapshot.meshes.get(mesh)
    if view is None:
        return []
    names = _names(view)
    return [_service_row(view, name, local_zone) for name in names]


def service(
    snapshot: Snapshot, mesh: str, name: str, local_zone: str | None = None
) -> ServiceRow | None:
    view = snapshot.meshes.get(mesh)
    if view is None or (name not in view.services and name not in view.remote):
        return None
    return _service_row(view, name, local_zone)


def _names(view: MeshView) -> list[str]:
    """The mesh's service names, its own and other zones', sorted."""
    return sorted({*view.services, *view.remote})


def _service_row(view: MeshView, name: str, local_zone: str | None) -> ServiceRow:
    own = view.services.get(name)
    remote = view.remote.get(name)
    shown = own or remote
    assert shown is not None
    endpoints = [*(own.endpoints if own else ()), *(remote.endpoints if remote else ())]
    return ServiceRow(
        mesh=view.name,
        name=name,
        vip=str(shown.vip) if shown.vip else None,
        vip6=str(shown.vip6) if shown.vip6 else None,
        zones=_by_zone(endpoints, local_zone),
        remote_only=own is None,
    )


def _by_zone(endpoints: Iterable[Endpoint], local_zone: str | None) -> tuple[ZoneEndpoints, ...]:
    totals: Counter[str] = Counter()
    serving: Counter[str] = Counter()
    local_name = local_zone or LOCAL_ZONE
    for endpoint in endpoints:
        zone = endpoint.zone if endpoint.zone and endpoint.zone != local_zone else local_name
        totals[zone] += 1
        serving[zone] += endpoint.serving
    # The local zone first, then the others by name.
    order = sorted(totals, key=lambda zone: (zone != local_name, zone))
    return tuple(
        ZoneEndpoints(zone, zone == local_name, totals[zone], serving[zone]) for zone in order
    )


def search(snapshot: Snapshot, query: str, local_zone: str | None = None) -> list[SearchHit]:
    """Services whose name contains ``query`` (any case), or that have ``query`` as a VIP
    or an endpoint address, in every mesh."""
    wanted = query.strip()
    if not wanted:
        return []
    address = _address(wanted)
    hits = []
    for _, view in sorted(snapshot.meshes.items()):
        for name in _names(view):
            matched = _match(view, name, wanted.lower(), address)
            if matched is not None:
                hits.append(SearchHit(_service_row(view, name, local_zone), matched))
    return hits


def _match(view: MeshView, name: str, text: str, address: IPAddress | None) -> str | None:
    if text in name.lower():
        return "name"
    if address is None:
        return None
    for found in (view.services.get(name), view.remote.get(name)):
        if found is not None and _has_address(found, address):
            return str(address)
    return None


def _has_address(service: ServiceView, address: IPAddress) -> bool:
    return address in (service.vip, service.vip6) or any(
        endpoint.address == address for endpoint in service.endpoints
    )


def _address(text: str) -> IPAddress | None:
    try:
        return ip_address(text)
    except ValueError:
        return None


# The service model page's tables, in this order.
MODEL_KINDS = (MESH_SERVICE, MESH_MULTIZONE_SERVICE, MESH_EXTERNAL_SERVICE)


@dataclass(frozen=True, slots=True)
class PortRow:
    """A port of a destination: Kuma's name of it, its number and protocol, and the
    dataplanes' port it leads to (None where the kind has no target)."""

    name: str
    port: int
    app_protocol: str
    target: str | None


@dataclass(frozen=True, slots=True)
class ConditionRow:
    """A HostnameGenerator's ``Generated`` condition on one destination."""

    generator: str
    status: str  # "True" or "False"
    reason: str  # Generated, Collision or TemplateError
    message: str


@dataclass(frozen=True, slots=True)
class DataplaneProxies:
    """How many dataplanes a MeshService selects, and of them with a ready inbound for
    every port (Kuma's dataplaneProxies total and healthy)."""

    total: int
    healthy: int


@dataclass(frozen=True, slots=True)
class DestinationRow:
    """One MeshService, MeshMultiZoneService or MeshExternalService, as the service model
    page lists it: its status (hostnames, VIP, generators' conditions) and its spec's
    ports, with what only its kind has."""

    kind: str
    name: str
    hostnames: tuple[str, ...]
    vip: str | None
    ports: tuple[PortRow, ...]
    conditions: tuple[ConditionRow, ...]
    dataplanes: DataplaneProxies | None  # a MeshService's
    endpoints: tuple[str, ...]  # a MeshExternalService's, "address:port"
    grouped: tuple[str, ...]  # the MeshServices a MeshMultiZoneService groups, "name (zone)"


def destination_keys(view: RegistryView, mesh: str) -> list[tuple[str, str]]:
    """(kind, name) of every destination of ``mesh``, kind by kind (MODEL_KINDS), by name."""
    return [(kind, name) for kind in MODEL_KINDS for name in view.destinations.names(kind, mesh)]


def destination(view: RegistryView, kind: str, mesh: str, name: str) -> DestinationRow | None:
    """Destination ``name`` of ``kind`` in ``mesh`` as ``view`` has it; None when it has not."""
    state = view.destinations.service(kind, mesh, name)
    status = status_of(view, kind, mesh, name)
    if state is None or status is None:
        return None
    vips = [status["vip"]] if "vip" in status else status.get("vips", [])
    ports: tuple[PortRow, ...]
    endpoints: tuple[str, ...] = ()
    if isinstance(state, ExternalServiceState):
        ports = (PortRow(str(state.port), state.port, state.protocol, None),)
        endpoints = tuple(f"{address}:{port}" for address, port in state.endpoints)
    else:
        ports = tuple(_port(port, kind) for port in state.ports)
    return DestinationRow(
        kind=kind,
        name=name,
        hostnames=tuple(dict.fromkeys(a["hostname"] for a in status.get("addresses", []))),
        vip=vips[0]["ip"] if vips else None,
        ports=ports,
        conditions=tuple(_conditions(status.get("hostnameGenerators", []))),
        dataplanes=_dataplanes(status.get("dataplaneProxies")) if kind == MESH_SERVICE else None,
        endpoints=endpoints,
        grouped=tuple(
            f"{service['name']} ({service['zone']})" for service in status.get("meshServices", [])
        ),
    )


def _port(port: ServicePort, kind: str) -> PortRow:
    # A MeshService's port without a targetPort leads to the same port on its dataplanes.
    target = None if kind == MESH_MULTIZONE_SERVICE else port.target_port or port.port
    return PortRow(port.name, port.port, port.app_protocol, None if target is None else str(target))


def _conditions(generators: Iterable[Mapping[str, Any]]) -> Iterable[ConditionRow]:
    for generator in generators:
        for condition in generator["conditions"]:
            yield ConditionRow(
                generator=generator["hostnameGeneratorRef"]["coreName"],
                status=condition["status"],
                reason=condition["reason"],
                message=condition["message"],
            )


def _dataplanes(proxies: Mapping[str, int] | None) -> DataplaneProxies:
    counts = proxies or {}  # the status leaves zeros out
    return DataplaneProxies(total=counts.get("total", 0), healthy=counts.get("healthy", 0))
