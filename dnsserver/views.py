"""Which zone a client is answered from: its mesh's tables, or a variant of them.

A mesh's tables hold its own zone's services only. Services other zones offer are
seen by some clients and not others (DESIGN, "Multi-zone"), so a client that may
reach some of them is answered from a *variant*: its mesh's tables with those
services applied on top, made on first use and shared by every client that sees the
same set.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from immutables import Map

from dnsserver.config import ZoneConfig
from dnsserver.records import Name, Soa
from dnsserver.tables import MeshTables, build_mesh, empty_tables
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
    meshes: Map[str, MeshTables]
    # Answered to clients whose mesh does not exist: the apex and nothing else.
    empty: MeshTables
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
        if view is None or not view.mtls or not view.remote:
            # No cross-zone traffic in this mesh: every client sees the mesh's tables.
            return ClientZone(mesh, self.zone_of(self.meshes.get(mesh, self.empty)))
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
        if visible:
            changes = [
                (name, _cross_zone_view(view.services.get(name), view.remote[name]))
                for name in sorted(visible)
            ]
            tables = tables.apply(self.config, changes, cross_zone=True)
            # Unique in this generation, even after the memo is cleared.
            key = f"{mesh}\0{next(self._variant_numbers)}"
            variant = ClientZone(key, self.zone_of(tables))
        else:
            variant = ClientZone(mesh, self.zone_of(tables))
        if len(self._by_visible) >= _MAX_VARIANTS:
            self._by_visible.clear()
        self._by_visible[(mesh, visible)] = variant
        return variant

    def zone_of(self, tables: MeshTables) -> Zone:
        return Zone(
            origin=self.origin,
            soa=self.soa,
            negative_ttl=self.config.negative_ttl,
            nodes=tables.nodes,
            addresses=tables.addresses,
            address_ttl=self.config.endpoints_ttl,
        )

    def is_dataplane(self, client: IPAddress) -> bool:
        return client in self.client_meshes


def build_zones(config: ZoneConfig, snapshot: Snapshot) -> Zones:
    """Build every mesh's tables from ``snapshot``."""
    empty = empty_tables(config)
    endpoints = sum(
        len(service.endpoints)
        for mesh in snapshot.meshes.values()
        for service in mesh.services.values()
    )
    with _collector_paused(freeze=endpoints >= _FREEZE_AT_ENDPOINTS):
        meshes = Map(
            {name: build_mesh(config, mesh, empty) for name, mesh in snapshot.meshes.items()}
        )
    return Zones(
        config=config,
        origin=zone_origin(config),
        soa=zone_soa(config, snapshot.revision),
        meshes=meshes,
        empty=empty,
        client_meshes=snapshot.dataplane_meshes,
        mesh_views=snapshot.meshes,
        client_services=snapshot.client_services,
    )


def update_zones(zones: Zones, snapshot: Snapshot, delta: Delta) -> Zones:
    """``zones`` moved to ``snapshot``, redoing only what ``delta`` says changed.

    Gives the same tables as :func:`build_zones` of ``snapshot``, provided ``delta``
    names every service and mesh that differs between the two snapshots. A mesh whose
    remote services or permissions alone changed (``delta.remote``) has nothing to
    redo: its variants are made from the new snapshot on first use.
    """
    config = zones.config
    meshes = zones.meshes.mutate()
    for mesh in delta.meshes:
        view = snapshot.meshes.get(mesh)
        if view is None:
            meshes.pop(mesh, None)
        else:
            meshes[mesh] = build_mesh(config, view, zones.empty)
    changed: dict[str, list[str]] = {}
    for mesh, service in delta.services:
        if mesh not in delta.meshes:
            changed.setdefault(mesh, []).append(service)
    for mesh, services in changed.items():
        view = snapshot.meshes.get(mesh)
        tables = meshes.get(mesh)
        if view is None:
            meshes.pop(mesh, None)
        elif tables is None:
            meshes[mesh] = build_mesh(config, view, zones.empty)
        else:
            meshes[mesh] = tables.apply(
                config, ((service, view.services.get(service)) for service in services)
            )
    return Zones(
        config=config,
        origin=zones.origin,
        soa=zone_soa(config, snapshot.revision),
        meshes=meshes.finish(),
        empty=zones.empty,
        # References to the snapshot's own mappings: nothing to redo.
        client_meshes=snapshot.dataplane_meshes,
        mesh_views=snapshot.meshes,
        client_services=snapshot.client_services,
    )


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


def build_zone(config: ZoneConfig, mesh: MeshView | None, revision: int) -> Zone:
    """The zone as seen from ``mesh`` (None: the apex only); for tests and tools."""
    tables = build_mesh(config, mesh) if mesh is not None else empty_tables(config)
    soa = zone_soa(config, revision)
    return Zone(
        zone_origin(config),
        soa,
        config.negative_ttl,
        tables.nodes,
        tables.addresses,
        config.endpoints_ttl,
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
