"""Kuma's service model as the registry's view follows it: each mesh's Destinations
(MeshServices, MeshExternalServices, MeshMultiZoneServices) with their VIPs, hostnames
and endpoints, redone only where a change reaches.

What reaches what: a dataplane's change, the MeshServices that select it (selection);
a MeshService's, the MeshMultiZoneServices grouping it; a generator's, every mesh's
hostnames of its kind; a resource's labels (or its coming and going), its mesh's
hostnames of its kind; a change to where another zone is reached (its ingresses, this
zone's egresses), the MeshServices of that zone.

A MeshService of another zone (one copied here by the sync) is served where this
registry holds that zone's dataplanes (global does) by those it selects; in a zone,
which holds only its own, by that zone's ingresses, through this zone's egresses when
it has any, as the legacy names of other zones are (registry/meshservice/ports.py).

Hostnames are a function of the generators and the resources of one mesh and kind
(hostnames.assign_hostnames), so whatever order the changes come in, the result is the
one a full load gives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

import immutables

from registry.feed.states import (
    DataplaneKey,
    DataplaneState,
    EgressState,
    InboundState,
    IngressState,
    ServiceKey,
)
from registry.meshservice.hostnames import Naming, assign_hostnames, hostname_zones
from registry.meshservice.ports import (
    external_port,
    mesh_service_ports,
    multizone_ports,
    zone_gateways,
)
from registry.meshservice.selection import Selection
from registry.meshservice.states import (
    DEFAULT_ZONE,
    DISPLAY_NAME_LABEL,
    MESH_EXTERNAL_SERVICE,
    MESH_MULTIZONE_SERVICE,
    MESH_SERVICE,
    ZONE_LABEL,
    ExternalServiceState,
    GeneratorState,
    MeshServiceState,
    MultiZoneServiceState,
    ResourceKey,
    ServicePort,
    ServiceState,
    matches,
)
from registry.schema.fields import SERVICE_TAG
from registry.snapshot import Destination, Endpoint, destination_key

MeshKind = tuple[str, str]  # (mesh, kind)
Changed = set[tuple[str, str]]  # (mesh, destination key)
_EMPTY: immutables.Map[str, Destination] = immutables.Map()


class Destinations:
    """The destinations of every mesh, kept current as the feed is applied.

    A change comes in two steps (RegistryView.apply): :meth:`take` the changed resources,
    generators and VIPs; then, with the view's dataplanes current, :meth:`settle` with the
    dataplanes that changed, which says which destinations differ. In between, :meth:`kept`
    trims a dataplane to what the selectors ask for.
    """

    def __init__(
        self,
        local_zone: str | None,
        dataplanes: Mapping[DataplaneKey, DataplaneState],
        members: Mapping[ServiceKey, set[str]],
        ingresses: Mapping[str, IngressState],
        egresses: Mapping[str, EgressState],
    ) -> None:
        self.zone = local_zone or DEFAULT_ZONE  # `.Zone` of a resource without the label
        self._local_zone = local_zone
        self._dataplanes = dataplanes
        # The view's own maps, current at settle(): where other zones are reached.
        self._ingresses = ingresses
        self._egresses = egresses
        self._gateways: dict[str, tuple[Endpoint, ...]] = {}  # zone -> its endpoints here
        self._of_zone: dict[str, set[ResourceKey]] = {}  # MeshServices of other zones
        self._services: dict[ResourceKey, ServiceState] = {}
        self._by_kind: dict[MeshKind, dict[str, ServiceState]] = {}
        self._vips: dict[ResourceKey, IPv4Address] = {}
        self._generators: dict[str, GeneratorState] = {}
        self._namings: dict[MeshKind, dict[str, Naming]] = {}
        self._selection = Selection(dataplanes, members, self.zone_of)
        self._groups: dict[tuple[str, str], set[str]] = {}  # MeshMultiZoneService -> MeshServices
        self._destinations: dict[str, immutables.Map[str, Destination]] = {}
        self.hostname_zones: frozenset[str] = frozenset()
        # What take() left for settle().
        self._touched: set[ResourceKey] = set()
        self._unnamed: set[MeshKind] = set()
        self._regrouped: set[ResourceKey] = set()  # MeshServices whose labels changed

    # -- reading ------------------------------------------------------------------------

    def of_mesh(self, mesh: str) -> immutables.Map[str, Destination]:
        return self._destinations.get(mesh, _EMPTY)

    def service(self, kind: str, mesh: str, name: str) -> ServiceState | None:
        return self._services.get((kind, mesh, name))

    def names(self, kind: str, mesh: str) -> list[str]:
        """The names of `mesh`'s resources of `kind`, sorted: what a listing walks."""
        return sorted(self._by_kind.get((mesh, kind), ()))

    def vip(self, kind: str, mesh: str, name: str) -> IPv4Address | None:
        return self._vips.get((kind, mesh, name))

    def naming(self, kind: str, mesh: str, name: str) -> Naming | None:
        return self._namings.get((mesh, kind), {}).get(name)

    def selected(self, mesh: str, name: str) -> list[DataplaneState]:
        """The dataplanes MeshService `name` selects, by name."""
        found = (
            self._dataplanes.get((mesh, dp))
            for dp in sorted(self._selection.selected((mesh, name)))
        )
        return [dataplane for dataplane in found if dataplane is not None]

    def grouped(self, mesh: str, name: str) -> list[MeshServiceState]:
        """The MeshServices MeshMultiZoneService `name` groups, by name."""
        found = (
            self._services.get((MESH_SERVICE, mesh, service))
            for service in sorted(self._groups.get((mesh, name), ()))
        )
        return [state for state in found if isinstance(state, MeshServiceState)]

    def zone_of(self, state: ServiceState) -> str | None:
        """The zone `state` comes from: its kuma.io/zone label when that is another
        zone's; None when it is this zone's own."""
        zone = state.labels.get(ZONE_LABEL)
        return None if zone is None or zone == self.zone else zone

    def kept(self, state: DataplaneState) -> DataplaneState:
        return self._selection.kept(state)

    # -- changes ------------------------------------------------------------------------

    def take(
        self,
        services: Mapping[ResourceKey, ServiceState | None],
        vips: Mapping[ResourceKey, IPv4Address | None],
        generators: Mapping[str, GeneratorState | None],
    ) -> bool:
        """Take in changed resources, VIPs and generators; whether the hostname zones
        changed."""
        for name, generator in generators.items():
            old = self._generators.pop(name, None)
            if generator is not None:
                self._generators[name] = generator
            for changed in (old, generator):
                if changed is not None:
                    # Every mesh's names of its kind.
                    self._unnamed.update(key for key in self._by_kind if key[1] == changed.kind)
        for key, state in services.items():
            self._take_service(key, state)
        for key, vip in vips.items():
            if vip is None:
                self._vips.pop(key, None)
            else:
                self._vips[key] = vip
            self._touched.add(key)
        if not generators:
            return False
        zones = hostname_zones(self._generators.values())
        zones_changed = zones != self.hostname_zones
        self.hostname_zones = zones
        return zones_changed

    def _take_service(self, key: ResourceKey, state: ServiceState | None) -> None:
        kind, mesh, name = key
        old = self._services.pop(key, None)
        by_kind = self._by_kind.setdefault((mesh, kind), {})
        by_kind.pop(name, None)
        if state is not None:
            self._services[key] = state
            by_kind[name] = state
        elif not by_kind:
            del self._by_kind[(mesh, kind)]
        if (
            state is None
            or old is None
            or (old.labels, old.created_at)
            != (
                state.labels,
                state.created_at,
            )
        ):
            self._unnamed.add((mesh, kind))
            if kind == MESH_SERVICE:
                self._regrouped.add(key)
        if kind == MESH_SERVICE:
            assert state is None or isinstance(state, MeshServiceState)
            self._selection.put((mesh, name), state)
            self._file_by_zone(key, old, state)
        if kind == MESH_MULTIZONE_SERVICE:
            self._groups.pop((mesh, name), None)
            if isinstance(state, MultiZoneServiceState):
                self._groups[(mesh, name)] = {
                    service
                    for service, grouped in self._by_kind.get((mesh, MESH_SERVICE), {}).items()
                    if matches(state.match_labels, grouped.labels)
                }
        self._touched.add(key)

    def _file_by_zone(
        self, key: ResourceKey, old: ServiceState | None, new: ServiceState | None
    ) -> None:
        """Keep the MeshServices of other zones by zone."""
        for state, add in ((old, False), (new, True)):
            zone = self.zone_of(state) if state is not None else None
            if zone is None:
                continue
            keys = self._of_zone.setdefault(zone, set())
            if add:
                keys.add(key)
            else:
                keys.discard(key)
                if not keys:
                    del self._of_zone[zone]

    def settle(
        self, dataplanes: Iterable[tuple[DataplaneState | None, DataplaneState | None]]
    ) -> Changed:
        """With the view's dataplanes (and ingresses, egresses) current, take in the
        dataplanes that changed (old, new); the (mesh, destination key) pairs whose
        Destination differs now."""
        touched, self._touched = self._touched, set()
        for zone in self._regateway():
            touched |= self._of_zone.get(zone, set())
        touched.update(
            (MESH_SERVICE, mesh, name)
            for mesh, name in self._selection.dataplanes_changed(dataplanes)
        )
        touched.update((MESH_SERVICE, mesh, name) for mesh, name in self._selection.settle())
        touched |= self._rename()
        touched |= self._regroup()
        changed: Changed = set()
        # MeshServices first: a MeshMultiZoneService takes its endpoints from theirs.
        for kind in (MESH_SERVICE, MESH_EXTERNAL_SERVICE):
            changed |= self._rebuild(key for key in touched if key[0] == kind)
        for mesh, key in [pair for pair in changed if pair[1].startswith(MESH_SERVICE + "/")]:
            name = key.partition("/")[2]
            touched.update(
                (MESH_MULTIZONE_SERVICE, group_mesh, group)
                for (group_mesh, group), services in self._groups.items()
                if group_mesh == mesh and name in services
            )
        changed |= self._rebuild(key for key in touched if key[0] == MESH_MULTIZONE_SERVICE)
        return changed

    def _regateway(self) -> set[str]:
        """Recompute where each other zone is reached from here; the zones whose
        endpoints changed. Few ingresses and egresses exist: all are looked at."""
        gateways = zone_gateways(
            self._ingresses.values(), self._egresses.values(), self._local_zone
        )
        changed = {
            zone
            for zone in gateways.keys() | self._gateways.keys()
            if gateways.get(zone) != self._gateways.get(zone)
        }
        self._gateways = gateways
        return changed

    def _rename(self) -> set[ResourceKey]:
        """Assign the hostnames of the (mesh, kind) pairs left unnamed; the resources
        whose naming changed."""
        unnamed, self._unnamed = self._unnamed, set()
        touched: set[ResourceKey] = set()
        generators = list(self._generators.values())
        for mesh, kind in unnamed:
            resources = self._by_kind.get((mesh, kind), {})
            namings = assign_hostnames(kind, generators, resources.values(), self.zone)
            old = self._namings.pop((mesh, kind), {})
            if namings:
                self._namings[(mesh, kind)] = namings
            for name in old.keys() | namings.keys():
                if old.get(name) != namings.get(name):
                    touched.add((kind, mesh, name))
        return touched

    def _regroup(self) -> set[ResourceKey]:
        """Recheck the MeshServices whose labels changed against every
        MeshMultiZoneService of their mesh; the groups that changed."""
        regrouped, self._regrouped = self._regrouped, set()
        touched: set[ResourceKey] = set()
        for _, mesh, name in regrouped:
            state = self._services.get((MESH_SERVICE, mesh, name))
            for (group_mesh, group), services in self._groups.items():
                if group_mesh != mesh:
                    continue
                multizone = self._services[(MESH_MULTIZONE_SERVICE, mesh, group)]
                assert isinstance(multizone, MultiZoneServiceState)
                member = state is not None and matches(multizone.match_labels, state.labels)
                if member != (name in services):
                    touched.add((MESH_MULTIZONE_SERVICE, mesh, group))
                    if member:
                        services.add(name)
                    else:
                        services.discard(name)
        return touched

    def _rebuild(self, keys: Iterable[ResourceKey]) -> Changed:
        changed: Changed = set()
        by_mesh: dict[str, list[ResourceKey]] = {}
        for key in keys:
            by_mesh.setdefault(key[1], []).append(key)
        for mesh, mesh_keys in by_mesh.items():
            current = self._destinations.get(mesh, _EMPTY)
            updated = current.mutate()
            for key in mesh_keys:
                destination = self._build(key)
                name = destination_key(key[0], key[2])
                if updated.get(name) == destination:
                    continue
                changed.add((mesh, name))
                if destination is None:
                    updated.pop(name, None)
                else:
                    updated[name] = destination
            finished = updated.finish()
            if finished:
                self._destinations[mesh] = finished
            else:
                self._destinations.pop(mesh, None)
        return changed

    # -- building -----------------------------------------------------------------------

    def _build(self, key: ResourceKey) -> Destination | None:
        state = self._services.get(key)
        if state is None:
            return None
        kind, mesh, name = key
        naming = self._namings.get((mesh, kind), {}).get(name)
        if isinstance(state, MeshServiceState):
            zone = self.zone_of(state)
            ports = mesh_service_ports(
                state,
                self.selected(mesh, name),
                None if zone is None else self._gateways.get(zone, ()),
            )
            # What traffic permissions name it by: its kuma.io/service, else (Universal)
            # its display name.
            service = (state.selector.tags or {}).get(SERVICE_TAG) or state.labels.get(
                DISPLAY_NAME_LABEL, name
            )
        elif isinstance(state, ExternalServiceState):
            ports, service = (external_port(state),), None
        else:
            grouped = (
                self.of_mesh(mesh).get(destination_key(MESH_SERVICE, service))
                for service in self._groups.get((mesh, name), ())
            )
            ports = multizone_ports(state, [d for d in grouped if d is not None])
            service = None
        return Destination(
            kind=kind,
            name=name,
            hostnames=naming.hostnames if naming is not None else (),
            vip=self._vips.get(key),
            ports=ports,
            zone=self.zone_of(state),
            service=service,
        )


def targets(port: ServicePort, inbound: InboundState) -> bool:
    """Whether a MeshService `port` targets `inbound`: its targetPort as a number is the
    inbound's port, as a name the inbound's name; without one, its own port is."""
    target = port.port if port.target_port is None else port.target_port
    if isinstance(target, int):
        return inbound.port == target
    return inbound.name == target
