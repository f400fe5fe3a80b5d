"""Which zone a client is answered from: its mesh's tables, or a variant of them.

A mesh's tables are its legacy names (its own zone's services only) and its
destinations. Services other zones offer are seen by some clients and not others
(DESIGN, "Multi-zone"), so a client that may reach some of them is answered from a
*variant*: its mesh's tables with those services applied on top, made on first use and
shared by every client that sees the same set.
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
    build_destinations,
    hostname_origins,
)
from dnsserver.records import Name, Soa
from dnsserver.tables import MeshTables, apply_services, build_mesh, empty_tables
from dnsserver.zone import Zone, zone_origin, zone_soa
from registry.snapshot import Delta, IPAddress, MeshView, ServiceView, Snapshot

# Variants remembered per generation of the tables (then they are made anew).
_MAX_VARIANTS = 4096
_NO_SERVICES: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ClientZone:
    """The zone a client is answered from, and a key naming that view of it.

    Clients with equal keys get equal answers (within one generation of the tables):
    the key is the mesh's name, or, for a variant with other zones' services, the
    mesh's name and a number no other variant of the generation has.
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
    client_meshes: Mapping[IPAddress, str]
    # The snapshot's meshes (their remote services, mTLS and traffic permissions) and
    # the services at each client address: what decides which remote services a client
    # sees. References to the snapshot's own mappings.
    mesh_views: Mapping[str, MeshView]
    client_services: Mapping[IPAddress, frozenset[str]]
    # Variants made so far, by (mesh, the client's services) and by (mesh, the remote
    # services seen); dropped with this generation of the tables.
    _by_client: dict[tuple[str, frozenset[str]], ClientZone] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _by_visible: dict[tuple[str, frozenset[str]], ClientZone] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _variant_numbers: Iterator[int] = field(
        default_factory=itertools.count, init=False, repr=False, compare=False
    )

    def zone_for(self, client: IPAddress) -> Zone:
        """The zone ``client`` is answered from (see :meth:`client_zone`)."""
        return self.client_zone(client).zone

    def client_zone(self, client: IPAddress) -> ClientZone:
        """The zone of the client's mesh (else of the default mesh), with the services
        of other zones that the client may reach (DESIGN, "Multi-zone")."""
        if client in self.config.resolver_addresses:
            # A resolver forwarding a node's queries is no one dataplane (docs/dns.md).
            mesh, services = self.config.default_mesh, _NO_SERVICES
        else:
            mesh = self.client_meshes.get(client, self.config.default_mesh)
            services = self.client_services.get(client, _NO_SERVICES)
        view = self.mesh_views.get(mesh)
        if view is None or not view.mtls or not view.remote or not view.legacy_names:
            # No cross-zone traffic in this mesh (a remote service is a legacy name):
            # every client sees the mesh's tables.
            destinations = self._destinations_seen(mesh, view, services)
            return ClientZone(mesh, self.zone_of(self.meshes.get(mesh, self.empty), destinations))
        variant = self._by_client.get((mesh, services))
        if variant is None:
            variant = self._variant(mesh, view, services)
            if len(self._by_client) >= _MAX_VARIANTS:
                self._by_client.clear()
            self._by_client[(mesh, services)] = variant
        return variant

    def _variant(self, mesh: str, view: MeshView, services: frozenset[str]) -> ClientZone:
        """The view of ``mesh`` (``view``) for a client serving ``services``."""
        visible = frozenset(
            name
            for name in view.remote
            if any(rule.allows(services, name) for rule in view.permissions)
        )
        variant = self._by_visible.get((mesh, visible))
        if variant is not None:
            return variant
        tables = self.meshes.get(mesh, self.empty)
        destinations = self._destinations_seen(mesh, view, services)
        if visible:
            changes = [
                (name, _cross_zone_view(view.services.get(name), view.remote[name]))
                for name in sorted(visible)
            ]
            tables = apply_services(self.config, tables, changes, cross_zone=True)
            # Unique in this generation, even after the memo is cleared.
            key = f"{mesh}\0{next(self._variant_numbers)}"
            variant = ClientZone(key, self.zone_of(tables, destinations))
        else:
            variant = ClientZone(mesh, self.zone_of(tables, destinations))
        if len(self._by_visible) >= _MAX_VARIANTS:
            self._by_visible.clear()
        self._by_visible[(mesh, visible)] = variant
        return variant

    def _destinations_seen(
        self, mesh: str, view: MeshView | None, services: frozenset[str]
    ) -> DestinationTables:
        """The destinations a client of ``mesh`` serving ``services`` is answered: all of
        the mesh's, for now.

        Which destinations of other zones a client may reach (mTLS and traffic
        permissions, as for remote services) is to be decided here, for every client.
        The key of the client's view (the mesh's name, or a variant's) must then tell
        apart what was decided, as a variant's does for remote services: the answer
        cache keys replies by it.
        """
        del view, services  # the seam: unused until destinations are gated per client
        return self.destinations.get(mesh, EMPTY_DESTINATIONS)

    def mesh_zone(self, mesh: str) -> Zone:
        """The zone of ``mesh`` as a client that sees no other zone's services gets it."""
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
        client_meshes=snapshot.dataplane_meshes,
        mesh_views=snapshot.meshes,
        client_services=snapshot.client_services,
    )


def update_zones(zones: Zones, snapshot: Snapshot, delta: Delta) -> Zones:
    """``zones`` moved to ``snapshot``, redoing only what ``delta`` says changed.

    Gives the same tables as :func:`build_zones` of ``snapshot``, provided ``delta``
    names every service, destination and mesh that differs between the two snapshots
    (a mesh whose legacy names were switched on or off among the meshes). A mesh whose
    remote services or permissions alone changed (``delta.remote``) has nothing to
    redo: its variants are made from the new snapshot on first use. When the hostname
    zones change, every mesh's destinations are redone.
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
        # References to the snapshot's own mappings: nothing to redo.
        client_meshes=snapshot.dataplane_meshes,
        mesh_views=snapshot.meshes,
        client_services=snapshot.client_services,
    )


def _build_all_destinations(
    config: ZoneConfig, origins: frozenset[Name], snapshot: Snapshot
) -> Map[str, DestinationTables]:
    return Map(
        {
            name: build_destinations(config, origins, mesh)
            for name, mesh in snapshot.meshes.items()
            if mesh.destinations
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
        if view is None or not view.destinations:
            destinations.pop(mesh, None)
        else:
            destinations[mesh] = build_destinations(config, origins, view)
    for mesh, keys in _by_mesh(delta.destinations, delta.meshes).items():
        view = snapshot.meshes.get(mesh)
        if view is None:
            destinations.pop(mesh, None)
            continue
        changes = ((key, view.destinations.get(key)) for key in keys)
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
    """The zone as seen from ``mesh`` (None: the apex only); for tests and tools."""
    tables = build_mesh(config, mesh) if mesh is not None else empty_tables(config)
    origins = hostname_origins(hostname_zones)
    destinations = (
        build_destinations(config, origins, mesh) if mesh is not None else EMPTY_DESTINATIONS
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


def _cross_zone_view(local: ServiceView | None, remote: ServiceView) -> ServiceView:
    """A service as a client that may reach it in other zones sees it: one VIP, the
    endpoints of every zone."""
    if local is None:
        return remote
    return ServiceView(
        name=local.name,
        vip=local.vip or remote.vip,
        vip6=local.vip6 or remote.vip6,
        endpoints=local.endpoints + remote.endpoints,
    )
