"""Which zone a client is answered from: its mesh's tables, or a variant of them.

A mesh's tables are what a client sees whose dataplanes narrow nothing and whom no
permission lets see another zone's services: this zone's legacy names and destinations.
Other clients see more (other zones' services) or fewer (their dataplanes'
reachableServices and reachableBackends), as registry.snapshot's rule says (docs/dns.md,
"Who sees which names"); each is answered from a *variant* (dnsserver.variants): its
mesh's tables made to show what it sees, made on first use and shared by every client
that sees the same.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from immutables import Map

from dnsserver.config import ZoneConfig
from dnsserver.destinations import (
    EMPTY_DESTINATIONS,
    DestinationTables,
    apply_destinations,
    hostname_origins,
)
from dnsserver.records import Name, Soa
from dnsserver.tables import MeshTables, apply_services, build_mesh, empty_tables
from dnsserver.variants import BASE, base_destinations, in_base, seen_by, variant_tables
from dnsserver.zone import Zone, zone_origin, zone_soa
from registry.snapshot import (
    Client,
    Delta,
    Destination,
    IPAddress,
    MeshView,
    Reach,
    Snapshot,
)

# Variants remembered per generation of the tables (then they are made anew).
_MAX_VARIANTS = 4096


@dataclass(frozen=True, slots=True)
class ClientZone:
    """The zone a client is answered from, and a key naming that view of it.

    Clients with equal keys get equal answers (within one generation of the tables):
    the key is the mesh's name, or, for a variant, the mesh's name and a number no other
    variant of the generation has. The answer cache keys replies by it.
    """

    key: str
    zone: Zone


@dataclass(frozen=True, slots=True)
class Zones:
    """Every mesh's tables and how to pick the ones a client is answered from."""

    config: ZoneConfig
    origin: Name
    soa: Soa
    # The legacy names of each mesh (under ``origin``).
    meshes: Map[str, MeshTables]
    # Answered to clients whose mesh does not exist: the apex and nothing else.
    empty: MeshTables
    # The zones destinations' hostnames fall under, and each mesh's destinations.
    hostname_origins: frozenset[Name]
    destinations: Map[str, DestinationTables]
    # The snapshot the tables are of: its meshes and clients decide what a client sees.
    snapshot: Snapshot
    # Variants made so far, by client (mesh, services, reach) and by what it sees; each
    # mesh's destinations of other zones; dropped with this generation of the tables.
    _by_client: dict[tuple[str, frozenset[str], Reach | None], ClientZone] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _by_seen: dict[tuple[str, object], ClientZone] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _foreign: dict[str, tuple[Destination, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _variant_numbers: Iterator[int] = field(
        default_factory=itertools.count, init=False, repr=False, compare=False
    )

    def zone_for(self, client: IPAddress) -> Zone:
        """The zone ``client`` is answered from (see :meth:`client_zone`)."""
        return self.client_zone(client).zone

    @property
    def client_meshes(self) -> Mapping[IPAddress, str]:
        return self.snapshot.dataplane_meshes

    def client(self, address: IPAddress) -> Client:
        """Who asks from ``address``: its dataplanes' mesh, services and reach, else a
        client of the default mesh."""
        if address in self.config.resolver_addresses:
            # A resolver forwarding a node's queries is no one dataplane (docs/dns.md).
            return Client(self.config.default_mesh)
        return self.snapshot.client(address, self.config.default_mesh)

    def client_zone(self, address: IPAddress) -> ClientZone:
        """The zone of the client's mesh (else of the default mesh), showing what the
        client sees of it (docs/dns.md, "Who sees which names")."""
        client = self.client(address)
        mesh = client.mesh
        view = self.snapshot.meshes.get(mesh)
        if view is None or (client.reach is None and not self._crosses_zones(view)):
            # Nothing to tell this client apart: the mesh's own tables.
            return ClientZone(mesh, self.mesh_zone(mesh))
        memo = (mesh, client.services, client.reach)
        variant = self._by_client.get(memo)
        if variant is None:
            variant = self._variant(view, client)
            if len(self._by_client) >= _MAX_VARIANTS:
                self._by_client.clear()
            self._by_client[memo] = variant
        return variant

    def _crosses_zones(self, view: MeshView) -> bool:
        """Whether some client may see other zones' services in ``view``: only with mTLS."""
        return view.mtls and (bool(view.remote) or bool(self._foreign_of(view)))

    def _foreign_of(self, view: MeshView) -> tuple[Destination, ...]:
        """The destinations of other zones in ``view``, found once per generation."""
        foreign = self._foreign.get(view.name)
        if foreign is None:
            foreign = tuple(d for d in view.destinations.values() if d.zone is not None)
            self._foreign[view.name] = foreign
        return foreign

    def _variant(self, view: MeshView, client: Client) -> ClientZone:
        """The zone for ``client`` of ``view``'s mesh."""
        mesh = view.name
        seen = seen_by(view, client, self._foreign_of(view) if view.mtls else ())
        variant = self._by_seen.get((mesh, seen))
        if variant is not None:
            return variant
        if seen == BASE:
            variant = ClientZone(mesh, self.mesh_zone(mesh))
        else:
            base = (
                self.meshes.get(mesh, self.empty),
                self.destinations.get(mesh, EMPTY_DESTINATIONS),
            )
            tables, destinations = variant_tables(
                self.config, self.hostname_origins, view, seen, base, self.empty
            )
            # Unique in this generation, even after the memo is cleared.
            key = f"{mesh}\0{next(self._variant_numbers)}"
            variant = ClientZone(key, self.zone_of(tables, destinations))
        if len(self._by_seen) >= _MAX_VARIANTS:
            self._by_seen.clear()
        self._by_seen[(mesh, seen)] = variant
        return variant

    def mesh_zone(self, mesh: str) -> Zone:
        """The zone of ``mesh`` from its own tables (a client that narrows nothing and
        sees no other zone's services)."""
        return self.zone_of(
            self.meshes.get(mesh, self.empty), self.destinations.get(mesh, EMPTY_DESTINATIONS)
        )

    def zone_of(
        self, tables: MeshTables, destinations: DestinationTables = EMPTY_DESTINATIONS
    ) -> Zone:
        """The zone answering from ``tables`` (legacy names) and ``destinations``."""
        return Zone(
            origin=self.origin,
            soa=self.soa,
            negative_ttl=self.config.negative_ttl,
            nodes=tables.nodes,
            addresses=tables.addresses,
            address_ttl=self.config.endpoints_ttl,
            hostname_origins=self.hostname_origins,
            hostnames=destinations.nodes,
            destination_addresses=destinations.addresses,
        )

    def is_dataplane(self, client: IPAddress) -> bool:
        return client in self.client_meshes


def build_zones(config: ZoneConfig, snapshot: Snapshot) -> Zones:
    """Build every mesh's tables from ``snapshot``."""
    empty = empty_tables(config)
    origins = hostname_origins(snapshot.hostname_zones)
    endpoints = sum(
        len(service.endpoints)
        for mesh in snapshot.meshes.values()
        for service in mesh.services.values()
    ) + sum(
        len(port.endpoints)
        for mesh in snapshot.meshes.values()
        for destination in mesh.destinations.values()
        for port in destination.ports
    )
    with _collector_paused(freeze=endpoints >= _FREEZE_AT_ENDPOINTS):
        meshes = Map(
            {name: build_mesh(config, mesh, empty) for name, mesh in snapshot.meshes.items()}
        )
        destinations = _build_all_destinations(config, origins, snapshot)
    return Zones(
        config=config,
        origin=zone_origin(config),
        soa=zone_soa(config, snapshot.revision),
        meshes=meshes,
        empty=empty,
        hostname_origins=origins,
        destinations=destinations,
        snapshot=snapshot,
    )


def update_zones(zones: Zones, snapshot: Snapshot, delta: Delta) -> Zones:
    """``zones`` moved to ``snapshot``, redoing only what ``delta`` says changed.

    Gives the same tables as :func:`build_zones` of ``snapshot``, provided ``delta``
    names every service, destination and mesh that differs between the two snapshots
    (a mesh whose legacy names or meshServices mode changed among the meshes). A mesh
    whose remote services or permissions alone changed (``delta.remote``), and clients
    whose services or reach changed, have nothing to redo: variants are made from the
    new snapshot on first use. When the hostname zones change, every mesh's
    destinations are redone.
    """
    config = zones.config
    meshes = zones.meshes.mutate()
    for mesh in delta.meshes:
        view = snapshot.meshes.get(mesh)
        if view is None:
            meshes.pop(mesh, None)
        else:
            meshes[mesh] = build_mesh(config, view, zones.empty)
    for mesh, services in _by_mesh(delta.services, delta.meshes).items():
        view = snapshot.meshes.get(mesh)
        tables = meshes.get(mesh)
        if view is None:
            meshes.pop(mesh, None)
        elif tables is None:
            meshes[mesh] = build_mesh(config, view, zones.empty)
        elif view.legacy_names:
            changes = ((service, view.services.get(service)) for service in services)
            meshes[mesh] = apply_services(config, tables, changes)
    return Zones(
        config=config,
        origin=zones.origin,
        soa=zone_soa(config, snapshot.revision),
        meshes=meshes.finish(),
        empty=zones.empty,
        hostname_origins=(origins := hostname_origins(snapshot.hostname_zones)),
        destinations=_update_destinations(zones, origins, snapshot, delta),
        snapshot=snapshot,  # what a client sees is decided on its first query
    )


def _build_all_destinations(
    config: ZoneConfig, origins: frozenset[Name], snapshot: Snapshot
) -> Map[str, DestinationTables]:
    return Map(
        {
            name: tables
            for name, mesh in snapshot.meshes.items()
            if mesh.destinations and (tables := base_destinations(config, origins, mesh)).claimants
        }
    )


def _update_destinations(
    zones: Zones, origins: frozenset[Name], snapshot: Snapshot, delta: Delta
) -> Map[str, DestinationTables]:
    """The destination tables of ``snapshot``: those of meshes and destinations that
    ``delta`` names redone, all of them when the hostname zones changed."""
    config = zones.config
    if delta.hostname_zones or origins != zones.hostname_origins:
        return _build_all_destinations(config, origins, snapshot)
    destinations = zones.destinations.mutate()
    for mesh in delta.meshes:
        view = snapshot.meshes.get(mesh)
        tables = base_destinations(config, origins, view) if view is not None else None
        if tables is None or not tables.claimants:
            destinations.pop(mesh, None)  # as a build leaves it: no tables for none
        else:
            destinations[mesh] = tables
    for mesh, keys in _by_mesh(delta.destinations, delta.meshes).items():
        view = snapshot.meshes.get(mesh)
        if view is None:
            destinations.pop(mesh, None)
            continue
        changes = ((key, in_base(view, view.destinations.get(key))) for key in keys)
        tables = destinations.get(mesh, EMPTY_DESTINATIONS)
        tables = apply_destinations(config, origins, tables, changes)
        if tables.claimants:
            destinations[mesh] = tables
        else:
            destinations.pop(mesh, None)  # as a build leaves it: no tables for none
    return destinations.finish()


def _by_mesh(changed: frozenset[tuple[str, str]], rebuilt: frozenset[str]) -> dict[str, list[str]]:
    """The changed items (mesh, key) of each mesh not rebuilt whole anyway."""
    by_mesh: dict[str, list[str]] = {}
    for mesh, key in changed:
        if mesh not in rebuilt:
            by_mesh.setdefault(mesh, []).append(key)
    return by_mesh


# Past this many endpoints, a built zone is frozen out of the cyclic collector's walks.
_FREEZE_AT_ENDPOINTS = 20_000


@contextlib.contextmanager
def _collector_paused(*, freeze: bool) -> Iterator[None]:
    """No cyclic garbage collection while building; for large zones none over it after.

    The tables hold no reference cycles: reference counting frees them. But a build
    makes millions of objects, and each batch would trigger a collection walking all
    those made before (three quarters of a build's time). Afterwards, every full
    collection would walk them all again: at 100,000 endpoints a pause of seconds in
    the middle of some later update. So a large build ends by moving what exists to the
    collector's permanent generation (``gc.freeze``), which it never walks. Only large
    ones: a cycle that was alive at the freeze and dies later is never collected, a
    small price once per large rebuild, a leak if paid on every small one.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


def build_zone(
    config: ZoneConfig,
    mesh: MeshView | None,
    revision: int,
    hostname_zones: frozenset[str] = frozenset(),
) -> Zone:
    """The zone of ``mesh``'s own tables (None: the apex only); for tests and tools."""
    tables = build_mesh(config, mesh) if mesh is not None else empty_tables(config)
    origins = hostname_origins(hostname_zones)
    destinations = (
        base_destinations(config, origins, mesh) if mesh is not None else EMPTY_DESTINATIONS
    )
    return Zone(
        zone_origin(config),
        zone_soa(config, revision),
        config.negative_ttl,
        tables.nodes,
        tables.addresses,
        config.endpoints_ttl,
        hostname_origins=origins,
        hostnames=destinations.nodes,
        destination_addresses=destinations.addresses,
    )
