"""Plain, immutable views of the registry, handed to readers such as the DNS server.

A snapshot is built from the database in one read and never changes afterwards;
readers replace it whole when the registry moves on. Nothing here touches a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

IPAddress = IPv4Address | IPv6Address

_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One reachable inbound of a dataplane: where clients of a service connect."""

    dataplane: str
    address: IPAddress
    port: int
    ready: bool = True
    zone: str | None = None
    # False while the dataplane's agent is gone (missed heartbeats): no endpoint then.
    online: bool = True

    @property
    def serving(self) -> bool:
        """Whether clients should be sent here: ready and online."""
        return self.ready and self.online


@dataclass(frozen=True, slots=True)
class ServiceView:
    """A service of one mesh: its stable virtual IPs and its endpoints."""

    name: str
    vip: IPv4Address | None
    vip6: IPv6Address | None = None
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def ready_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(endpoint for endpoint in self.endpoints if endpoint.serving)


@dataclass(frozen=True, slots=True)
class DestinationPort:
    """One port of a destination (MeshService and kin), and where it is served.

    ``endpoints`` listen on their own port (the inbound a MeshService port targets);
    ``hosts`` are endpoints given by name (a MeshExternalService's ``address: db.example``),
    each (hostname, port), answered in SRV with the name as the target.
    """

    name: str  # the port's name, else its number: Kuma's name of a port
    port: int
    app_protocol: str = "tcp"
    endpoints: tuple[Endpoint, ...] = ()
    hosts: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Destination:
    """A MeshService, MeshExternalService or MeshMultiZoneService as DNS answers it: its
    hostnames (each lower case, without a final dot) resolve to its VIP; SRV
    ``_<port>._tcp.<hostname>`` gives each port's endpoints.

    ``zone`` is the zone it comes from, for one synced from another zone (None: this
    zone's own); ``service`` is the kuma.io/service it stands for, if any, which is what
    traffic permissions name.
    """

    kind: str
    name: str
    hostnames: tuple[str, ...]
    vip: IPv4Address | None
    ports: tuple[DestinationPort, ...] = ()
    zone: str | None = None
    service: str | None = None

    @property
    def key(self) -> str:
        return destination_key(self.kind, self.name)


def destination_key(kind: str, name: str) -> str:
    """How a mesh's destinations are keyed: ``MeshService/redis``."""
    return f"{kind}/{name}"


ANY_SERVICE = "*"  # a TrafficPermission match on any service


@dataclass(frozen=True, slots=True)
class TrafficRule:
    """One TrafficPermission, by ``kuma.io/service``: who may reach whom (``*``: anyone)."""

    sources: frozenset[str]
    destinations: frozenset[str]

    def allows(self, clients: frozenset[str], service: str) -> bool:
        """Whether a client serving ``clients`` (none: not a dataplane) may reach ``service``."""
        if ANY_SERVICE not in self.destinations and service not in self.destinations:
            return False
        return ANY_SERVICE in self.sources or not self.sources.isdisjoint(clients)


@dataclass(frozen=True, slots=True)
class MeshView:
    """A mesh and the services registered in it, keyed by service name.

    ``services`` are this zone's own. ``remote`` are the services other zones' ingresses
    offer in this mesh: each with its VIP in this zone and, as endpoints, where a client
    here connects to reach it (the offering ingress, or this zone's egress), each endpoint
    carrying the offering zone. Who may see a remote service is the DNS server's call,
    from ``mtls`` and ``permissions`` (DESIGN, "Multi-zone").
    """

    name: str
    mtls: bool = False
    services: Mapping[str, ServiceView] = field(default_factory=lambda: _EMPTY)
    remote: Mapping[str, ServiceView] = field(default_factory=lambda: _EMPTY)
    permissions: tuple[TrafficRule, ...] = ()
    # MeshServices and their kin, by key (:func:`destination_key`): Kuma's current model.
    destinations: Mapping[str, Destination] = field(default_factory=lambda: _EMPTY)
    # Whether the legacy names (``<service>.mesh`` and the rest) are answered: not in a mesh
    # whose meshServices.mode is Exclusive (Kuma 3.0's behaviour).
    legacy_names: bool = True


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole registry as one consistent, read-only view at ``revision``."""

    revision: int
    meshes: Mapping[str, MeshView] = field(default_factory=lambda: _EMPTY)
    # The mesh of each dataplane address, so a query can be answered in its client's mesh.
    dataplane_meshes: Mapping[IPAddress, str] = field(default_factory=lambda: _EMPTY)
    # The services of the dataplanes at each address (in its mesh): what TrafficPermission
    # sources are matched against.
    client_services: Mapping[IPAddress, frozenset[str]] = field(default_factory=lambda: _EMPTY)
    # The DNS zones destinations' hostnames fall under, besides the legacy domain: what
    # the hostname generators' templates end with (``svc.mesh.local``...), lower case.
    hostname_zones: frozenset[str] = frozenset()

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(revision=0)


@dataclass(frozen=True, slots=True)
class Delta:
    """What changed from one snapshot to the next, so a reader can redo only that part.

    A reader that cannot use a delta rebuilds from the whole snapshot; the result must be
    the same either way.
    """

    # (mesh, service) pairs whose ServiceView appeared, changed or went away.
    services: frozenset[tuple[str, str]] = frozenset()
    # Meshes that appeared, went away or whose own settings (such as mTLS) changed.
    meshes: frozenset[str] = frozenset()
    # Whether Snapshot.dataplane_meshes or client_services changed.
    clients: bool = False
    # Meshes whose remote services or traffic permissions changed (their own services
    # did not, unless listed above).
    remote: frozenset[str] = frozenset()
    # (mesh, destination key) pairs whose Destination appeared, changed or went away.
    destinations: frozenset[tuple[str, str]] = frozenset()
    # Whether Snapshot.hostname_zones changed (every mesh's hostname tables are redone).
    hostname_zones: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.services
            or self.meshes
            or self.clients
            or self.remote
            or self.destinations
            or self.hostname_zones
        )
