"""Plain, immutable views of the registry, handed to readers such as the DNS server, and
the one rule of who sees what in them.

A snapshot is built from the database in one read and never changes afterwards;
readers replace it whole when the registry moves on. Nothing here touches a database.

Visibility (docs/dns.md, "Who sees which names"): a :class:`Client` (a mesh, the
services of its dataplanes, their :class:`Reach`) sees of a :class:`MeshView` what
:meth:`MeshView.sees_service`, :meth:`MeshView.sees_remote` and
:meth:`MeshView.seen_destination` say, or all of it at once, :meth:`MeshView.sight`.
The DNS server and the agents' feed decide from these alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

IPAddress = IPv4Address | IPv6Address

_EMPTY: Mapping = MappingProxyType({})
# Labels of Kuma's that visibility reads on a destination.
DISPLAY_NAME_LABEL = "kuma.io/display-name"
NAMESPACE_LABEL = "k8s.kuma.io/namespace"


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
    traffic permissions name. ``labels`` are the resource's, which reachableBackends
    refs select by.
    """

    kind: str
    name: str
    hostnames: tuple[str, ...]
    vip: IPv4Address | None
    ports: tuple[DestinationPort, ...] = ()
    zone: str | None = None
    service: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def key(self) -> str:
        return destination_key(self.kind, self.name)

    @property
    def display_name(self) -> str:
        """Its name as Kuma shows it: its kuma.io/display-name label, else its name (a
        synced one's name is hashed, its display name the original)."""
        return self.labels.get(DISPLAY_NAME_LABEL, self.name)

    @property
    def permission_service(self) -> str:
        """What traffic permissions name it by: its kuma.io/service, else its display name
        (on Universal, a MeshService's display name is the service it stands for)."""
        return self.service or self.display_name


def destination_key(kind: str, name: str) -> str:
    """How a mesh's destinations are keyed: ``MeshService/redis``."""
    return f"{kind}/{name}"


ANY_SERVICE = "*"  # a TrafficPermission match on any service
_NO_SERVICES: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TrafficRule:
    """Who may reach whom, by ``kuma.io/service`` (``*``: anyone): one TrafficPermission,
    or what one MeshTrafficPermission allows (docs/service-model.md, "Permissions")."""

    sources: frozenset[str]
    destinations: frozenset[str]

    def allows(self, clients: frozenset[str], service: str) -> bool:
        """Whether a client serving ``clients`` (none: not a dataplane) may reach ``service``."""
        if ANY_SERVICE not in self.destinations and service not in self.destinations:
            return False
        return ANY_SERVICE in self.sources or not self.sources.isdisjoint(clients)


@dataclass(frozen=True, slots=True)
class BackendRef:
    """One of a dataplane's ``transparentProxying.reachableBackends.refs``.

    It names the destinations of ``kind`` whose display name is ``name`` in the
    dataplane's own zone (as Kuma resolves a name), else those whose labels include
    every pair of ``labels``; ``port`` narrows it to the port of that number or name.
    A ref with neither name nor labels (Kuma refuses it) names nothing.
    """

    kind: str
    name: str | None = None
    namespace: str | None = None
    port: int | None = None
    labels: tuple[tuple[str, str], ...] | None = None  # sorted (key, value) pairs

    def selects(self, destination: Destination) -> bool:
        """Whether this ref names ``destination`` (any of its ports)."""
        if destination.kind != self.kind:
            return False
        if self.name is not None:
            return (
                destination.zone is None
                and destination.display_name == self.name
                and destination.labels.get(NAMESPACE_LABEL) == self.namespace
            )
        if self.labels is not None:
            return all(destination.labels.get(key) == value for key, value in self.labels)
        return False

    def selects_port(self, port: DestinationPort) -> bool:
        return self.port is None or port.port == self.port or port.name == str(self.port)


@dataclass(frozen=True, slots=True)
class Reachable:
    """What one dataplane's transparent proxy says it reaches: ``services`` its
    reachableServices (None: unset, or empty, which Kuma takes as unset), ``backends``
    its reachableBackends refs (None: unset; empty: nothing)."""

    services: tuple[str, ...] | None = None
    backends: tuple[BackendRef, ...] | None = None


@dataclass(frozen=True, slots=True)
class Reach:
    """What the dataplanes at one address may reach: the union of what each may.

    A dataplane narrows as Kuma's transparent proxy does (docs/dns.md, "Who sees which
    names"): reachableServices to those legacy services; reachableBackends to the
    destinations its refs name; reachableServices without reachableBackends to no
    destination at all. So ``services`` are the legacy services named (None: any, some
    dataplane names none), ``backends`` the refs of those that list them, and
    ``every_destination`` whether one lists neither (it reaches every destination,
    unless its mesh's meshServices.mode is ReachableBackends).
    """

    services: frozenset[str] | None = None
    backends: tuple[BackendRef, ...] = ()
    every_destination: bool = True

    @classmethod
    def union(cls, reachables: Iterable[Reachable | None]) -> Reach | None:
        """The reach of dataplanes at one address, from each one's (None: it narrows
        nothing); None when none of them narrows anything."""
        services: set[str] | None = set()
        backends: dict[BackendRef, None] = {}
        every_destination = narrowed = False
        for reachable in reachables:
            if reachable is None or (reachable.services is None and reachable.backends is None):
                services, every_destination = None, True
                continue
            narrowed = True
            if reachable.services is None:
                services = None
            elif services is not None:
                services.update(reachable.services)
            backends.update(dict.fromkeys(reachable.backends or ()))
        if not narrowed:
            return None
        return cls(
            services=None if services is None else frozenset(services),
            backends=tuple(backends),
            every_destination=every_destination,
        )

    def allows_service(self, service: str) -> bool:
        """Whether the legacy names of ``service`` are within reach."""
        return self.services is None or service in self.services


@dataclass(frozen=True, slots=True)
class Client:
    """Who asks: a mesh, the services of its dataplanes there (what permission sources
    match; none for a client that is no dataplane) and their reach (None: unnarrowed)."""

    mesh: str
    services: frozenset[str] = frozenset()
    reach: Reach | None = None


@dataclass(frozen=True, slots=True)
class MeshView:
    """A mesh and the services registered in it, keyed by service name.

    ``services`` are this zone's own. ``remote`` are the services other zones' ingresses
    offer in this mesh: each with its VIP in this zone and, as endpoints, where a client
    here connects to reach it (the offering ingress, or this zone's egress), each endpoint
    carrying the offering zone. Who sees what of it is decided by the methods below.
    """

    name: str
    mtls: bool = False
    services: Mapping[str, ServiceView] = field(default_factory=lambda: _EMPTY)
    remote: Mapping[str, ServiceView] = field(default_factory=lambda: _EMPTY)
    # From TrafficPermissions and MeshTrafficPermissions alike.
    permissions: tuple[TrafficRule, ...] = ()
    # MeshServices and their kin, by key (:func:`destination_key`): Kuma's current model.
    destinations: Mapping[str, Destination] = field(default_factory=lambda: _EMPTY)
    # Whether the legacy names (``<service>.mesh`` and the rest) are answered: not in a mesh
    # whose meshServices.mode is Exclusive (Kuma 3.0's behaviour).
    legacy_names: bool = True
    # Whether a client sees only the destinations its reachableBackends name (none when
    # it names none): a mesh whose meshServices.mode is ReachableBackends.
    reachable_backends: bool = False

    def permits(self, client: Client, service: str) -> bool:
        """Whether ``client`` may reach ``service`` of another zone: the mesh has mTLS
        (cross-zone traffic needs it) and a permission allows one of its services."""
        return self.mtls and any(rule.allows(client.services, service) for rule in self.permissions)

    def sees_service(self, client: Client, service: str) -> bool:
        """Whether ``client`` is answered the legacy names of ``service`` of this zone."""
        return self.legacy_names and (client.reach is None or client.reach.allows_service(service))

    def sees_remote(self, client: Client, service: str) -> bool:
        """Whether ``client`` is answered ``service`` of other zones (``remote``) by its
        legacy names."""
        return self.sees_service(client, service) and self.permits(client, service)

    def sees_destinations_unnarrowed(self, client: Client) -> bool:
        """Whether ``client`` sees this zone's destinations as a client without reach
        does: all of them, or none in a ReachableBackends mesh."""
        reach = client.reach
        return reach is None or (reach.every_destination and not self.reachable_backends)

    def seen_destination(self, client: Client, destination: Destination) -> Destination | None:
        """``destination`` as ``client`` sees it (with only the ports within its reach:
        its VIP answers for any), or None when it is hidden from it.

        One of another zone (``zone`` set) needs :meth:`permits` as well.
        """
        if destination.zone is not None and not self.permits(
            client, destination.permission_service
        ):
            return None
        reach = client.reach
        if reach is None or self.sees_destinations_unnarrowed(client):
            return None if self.reachable_backends else destination
        wanted: set[int] = set()
        selected = False
        for ref in reach.backends:
            if not ref.selects(destination):
                continue
            if ref.port is None:
                return destination
            selected = True
            wanted.update(
                index for index, port in enumerate(destination.ports) if ref.selects_port(port)
            )
        if not selected:
            return None
        if len(wanted) == len(destination.ports):
            return destination
        return replace(
            destination,
            ports=tuple(port for index, port in enumerate(destination.ports) if index in wanted),
        )

    def sight(self, client: Client) -> Sight:
        """Everything ``client`` sees of this mesh, at once (for a feed that sends it)."""
        services = {
            name: view for name, view in self.services.items() if self.sees_service(client, name)
        }
        remote = {
            name: view for name, view in self.remote.items() if self.sees_remote(client, name)
        }
        destinations = {
            key: seen
            for key, destination in self.destinations.items()
            if (seen := self.seen_destination(client, destination)) is not None
        }
        return Sight(
            MappingProxyType(services), MappingProxyType(remote), MappingProxyType(destinations)
        )


@dataclass(frozen=True, slots=True)
class Sight:
    """What one client sees of a mesh (:meth:`MeshView.sight`): this zone's legacy
    services, other zones' (``remote``), and the destinations as it sees them (of this
    zone and of others, by key)."""

    services: Mapping[str, ServiceView]
    remote: Mapping[str, ServiceView]
    destinations: Mapping[str, Destination]


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
    # The reach of the dataplanes at each address (in its mesh), for the addresses where
    # some dataplane narrows it (transparentProxying reachableServices/reachableBackends).
    client_reach: Mapping[IPAddress, Reach] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(revision=0)

    def client(self, address: IPAddress, default_mesh: str) -> Client:
        """The client at ``address``: its dataplanes' mesh, services and reach; one that is
        no dataplane (or whose dataplanes are of several meshes) is of ``default_mesh``."""
        mesh = self.dataplane_meshes.get(address)
        if mesh is None:
            return Client(default_mesh)
        services = self.client_services.get(address, _NO_SERVICES)
        return Client(mesh, services, self.client_reach.get(address))


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
    # Whether Snapshot.dataplane_meshes, client_services or client_reach changed.
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
