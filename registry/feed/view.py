"""The registry as a reader follows it: changed state in, immutable snapshots out.

A reader (the DNS server, later the sync worker and the dataplane agent) feeds this view
the current state of whatever the change feed says changed; it answers with a new
Snapshot and a Delta saying what differs. The snapshot's maps are persistent
(``immutables.Map``), so a change costs in proportion to the change, not to the registry,
and every snapshot handed out stays valid and unchanged. Kuma's service model
(MeshServices and their kin, as Destinations) is kept by registry.meshservice's
Destinations, fed the same changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

import immutables

from registry.feed.clients import Clients
from registry.feed.states import (
    DataplaneKey,
    DataplaneState,
    EgressState,
    FeedBatch,
    IngressState,
    MeshState,
    ServiceKey,
    Vip,
)
from registry.meshservice.destinations import Destinations
from registry.meshservice.states import GeneratorState, ResourceKey, ServiceState
from registry.snapshot import (
    Delta,
    Endpoint,
    IPAddress,
    MeshView,
    ServiceView,
    Snapshot,
    TrafficRule,
)

# The meshServices.mode in which a client sees only the destinations it names.
_REACHABLE_BACKENDS = "ReachableBackends"


class RegistryView:
    """Mutable state of the registry, producing immutable snapshots after each change.

    `local_zone` is the zone whose registry this is: ingresses of other zones offer
    remote services; egresses of this zone (or of no zone) carry the traffic to them.
    """

    def __init__(self, local_zone: str | None = None) -> None:
        self.local_zone = local_zone
        self._ingresses: dict[str, IngressState] = {}
        self._egresses: dict[str, EgressState] = {}
        self._permissions: dict[tuple[str, str], TrafficRule] = {}
        self._remote: dict[str, immutables.Map[str, ServiceView]] = {}
        self._meshes: dict[str, MeshState] = {}
        self._dataplanes: dict[DataplaneKey, DataplaneState] = {}
        self._members: dict[ServiceKey, set[str]] = {}  # dataplane names of each service
        # Kuma's service model: MeshServices and their kin, read with the view's dataplanes.
        self.destinations = Destinations(
            local_zone, self._dataplanes, self._members, self._ingresses, self._egresses
        )
        self._vips: dict[ServiceKey, Vip] = {}
        self._owners: dict[IPAddress, set[DataplaneKey]] = {}  # who has each address
        self._services: immutables.Map[str, immutables.Map[str, ServiceView]] = immutables.Map()
        self._clients = Clients(self._owners, self._dataplanes)
        self._mesh_views: immutables.Map[str, MeshView] = immutables.Map()
        self.snapshot = Snapshot.empty()

    def apply(
        self,
        revision: int,
        meshes: Mapping[str, MeshState | bool | None],
        dataplanes: Mapping[DataplaneKey, DataplaneState | None],
        vips: Mapping[ServiceKey, Vip | None],
        ingresses: Mapping[str, IngressState | None] | None = None,
        egresses: Mapping[str, EgressState | None] | None = None,
        permissions: Mapping[tuple[str, str], TrafficRule | None] | None = None,
        *,
        services: Mapping[ResourceKey, ServiceState | None] | None = None,
        service_vips: Mapping[ResourceKey, IPv4Address | None] | None = None,
        generators: Mapping[str, GeneratorState | None] | None = None,
    ) -> Delta:
        """Take in the current state of what changed (None: it is gone); publish a snapshot.

        `vips` must cover every service the changed dataplanes serve and the changed
        ingresses offer now. The VIPs of the services they let go of are dropped here
        when no dataplane serves and no ingress offers them any more, as the store then
        puts them into quarantine (registry/store/vips.py). A mesh given as a bool is
        one with that mTLS and Kuma's defaults otherwise.
        """
        touched_services: set[ServiceKey] = set()
        touched_addresses: set[IPAddress] = set()
        let_go: set[ServiceKey] = set()  # served or offered before this change
        cold = not self._dataplanes
        zones_changed = self.destinations.take(services or {}, service_vips or {}, generators or {})
        dataplane_changes: list[tuple[DataplaneState | None, DataplaneState | None]] = []
        for key, state in dataplanes.items():
            old = self._dataplanes.pop(key, None)
            if old is not None:
                self._forget(old, touched_services, touched_addresses)
                let_go.update((old.mesh, service) for service in old.services)
            if state is not None:
                state = self.destinations.kept(state)
                # A cold load rebuilds the whole client map; no need to note addresses.
                self._remember(state, touched_services, None if cold else touched_addresses)
            dataplane_changes.append((old, state))
        for service_key, vip in vips.items():
            if vip is None:
                self._vips.pop(service_key, None)
            else:
                self._vips[service_key] = vip
            touched_services.add(service_key)
        touched_meshes: set[str] = set()
        for mesh, mesh_state in meshes.items():
            if mesh_state is None:
                self._meshes.pop(mesh, None)
            elif isinstance(mesh_state, bool):
                self._meshes[mesh] = MeshState(mtls=mesh_state)
            else:
                self._meshes[mesh] = mesh_state
            touched_meshes.add(mesh)

        for name in ingresses or {}:
            if (ingress := self._ingresses.get(name)) is not None:
                let_go |= ingress.services
        remote_meshes = self._update_remote(
            ingresses or {}, egresses or {}, permissions or {}, touched_services
        )
        self._release_vips(let_go.difference(vips))
        changed_services = self._rebuild_services(touched_services)
        changed_destinations = self.destinations.settle(dataplane_changes)
        if cold:
            clients_changed = self._clients.build()
        else:
            clients_changed = self._clients.rebuild(touched_addresses)
        self.snapshot = Snapshot(
            revision=revision,
            meshes=self._rebuild_meshes(
                touched_meshes
                | remote_meshes
                | {mesh for mesh, _ in changed_services}
                | {mesh for mesh, _ in changed_destinations}
            ),
            dataplane_meshes=self._clients.meshes,
            client_services=self._clients.services,
            hostname_zones=self.destinations.hostname_zones,
            client_reach=self._clients.reach,
        )
        return Delta(
            services=frozenset(changed_services),
            meshes=frozenset(touched_meshes),
            clients=clients_changed,
            remote=frozenset(remote_meshes - touched_meshes),
            destinations=frozenset(changed_destinations),
            hostname_zones=zones_changed,
        )

    def _update_remote(
        self,
        ingresses: Mapping[str, IngressState | None],
        egresses: Mapping[str, EgressState | None],
        permissions: Mapping[tuple[str, str], TrafficRule | None],
        touched_services: set[ServiceKey],
    ) -> set[str]:
        """Take in ingress, egress and permission changes; the meshes whose remote
        services or permissions differ now."""
        for name, ingress in ingresses.items():
            if ingress is None:
                self._ingresses.pop(name, None)
            else:
                self._ingresses[name] = ingress
        for name, egress in egresses.items():
            if egress is None:
                self._egresses.pop(name, None)
            else:
                self._egresses[name] = egress
        changed = {mesh for mesh, _ in permissions}
        for key, rule in permissions.items():
            if rule is None:
                self._permissions.pop(key, None)
            else:
                self._permissions[key] = rule
        remote_vips = any(
            key[1] in self._remote.get(key[0], immutables.Map()) for key in touched_services
        )
        if not (ingresses or egresses or remote_vips):
            return changed
        # Few ingresses and egresses exist: recompute every mesh's remote services.
        remote: dict[str, dict[str, ServiceView]] = {}
        for mesh, service in sorted({key for i in self._remote_ingresses() for key in i.services}):
            view = self._remote_view(mesh, service)
            if view is not None:
                remote.setdefault(mesh, {})[service] = view
        for mesh in self._remote.keys() | remote.keys():
            new = remote.get(mesh, {})
            if dict(self._remote.get(mesh, immutables.Map())) != new:
                changed.add(mesh)
                if new:
                    self._remote[mesh] = immutables.Map(new)
                else:
                    self._remote.pop(mesh, None)
        return changed

    def _release_vips(self, services: Iterable[ServiceKey]) -> None:
        """Drop the VIPs of those of `services` no dataplane serves and no ingress offers."""
        for key in services:
            if key in self._members:
                continue
            if any(key in ingress.services for ingress in self._ingresses.values()):
                continue
            self._vips.pop(key, None)

    def _remote_ingresses(self) -> list[IngressState]:
        return [
            ingress
            for ingress in self._ingresses.values()
            if ingress.zone is not None and ingress.zone != self.local_zone
        ]

    def _remote_view(self, mesh: str, service: str) -> ServiceView | None:
        """Where clients here reach `service` of another zone: through this zone's egresses
        when it has any, else straight to the offering ingresses."""
        offering = sorted(
            (i for i in self._remote_ingresses() if (mesh, service) in i.services),
            key=lambda i: i.name,
        )
        if not offering:
            return None
        egresses = sorted(
            (e for e in self._egresses.values() if e.zone in (None, self.local_zone)),
            key=lambda e: e.name,
        )
        endpoints: dict[tuple[IPAddress, int], Endpoint] = {}
        for ingress in offering:
            hops = [(e.name, e.address, e.port) for e in egresses] or [
                (ingress.name, ingress.address, ingress.port)
            ]
            for name, address, port in hops:
                endpoints.setdefault(
                    (address, port),
                    Endpoint(dataplane=name, address=address, port=port, zone=ingress.zone),
                )
        return _service(service, self._vips.get((mesh, service)), tuple(endpoints.values()))

    def apply_batch(self, batch: FeedBatch) -> Delta:
        """:meth:`apply` of what a feed read returned."""
        return self.apply(
            batch.revision,
            batch.meshes,
            batch.dataplanes,
            batch.vips,
            batch.ingresses,
            batch.egresses,
            batch.permissions,
            services=batch.services,
            service_vips=batch.service_vips,
            generators=batch.generators,
        )

    def dataplane(self, key: DataplaneKey) -> DataplaneState | None:
        return self._dataplanes.get(key)

    def dataplanes(self) -> list[DataplaneState]:
        """Every dataplane now (a copy: the view changes as the feed is applied)."""
        return list(self._dataplanes.values())

    def meshes_at(self, address: IPAddress) -> set[str]:
        """The meshes of the dataplanes at `address`."""
        return {mesh for mesh, _ in self._owners.get(address, ())}

    def dataplanes_of(self, mesh: str) -> set[DataplaneKey]:
        return {key for key in self._dataplanes if key[0] == mesh}

    # -- bookkeeping ----------------------------------------------------------------------

    def _remember(
        self, state: DataplaneState, services: set[ServiceKey], addresses: set[IPAddress] | None
    ) -> None:
        key = (state.mesh, state.name)
        self._dataplanes[key] = state
        for service in state.services:
            self._members.setdefault((state.mesh, service), set()).add(state.name)
            services.add((state.mesh, service))
        for address in state.addresses:
            self._owners.setdefault(address, set()).add(key)
            if addresses is not None:
                addresses.add(address)

    def _forget(
        self, state: DataplaneState, services: set[ServiceKey], addresses: set[IPAddress]
    ) -> None:
        key = (state.mesh, state.name)
        for service in state.services:
            members = self._members.get((state.mesh, service))
            if members is not None:
                members.discard(state.name)
                if not members:
                    del self._members[(state.mesh, service)]
            services.add((state.mesh, service))
        for address in state.addresses:
            owners = self._owners.get(address)
            if owners is not None:
                owners.discard(key)
                if not owners:
                    del self._owners[address]
            addresses.add(address)

    def _service_view(self, key: ServiceKey) -> ServiceView | None:
        members = self._members.get(key)
        if not members:
            return None
        mesh, service = key
        endpoints: list[Endpoint] = []
        for name in sorted(members):
            state = self._dataplanes[(mesh, name)]
            endpoints.extend(
                Endpoint(
                    dataplane=name,
                    address=state.advertised or inbound.address,
                    port=inbound.port,
                    ready=inbound.ready,
                    online=state.online,
                )
                for inbound in state.inbounds
                if inbound.service == service
            )
        return _service(service, self._vips.get(key), tuple(endpoints))

    def _rebuild_services(self, keys: set[ServiceKey]) -> set[ServiceKey]:
        changed: set[ServiceKey] = set()
        by_mesh: dict[str, list[ServiceKey]] = {}
        for key in keys:
            by_mesh.setdefault(key[0], []).append(key)
        services = self._services.mutate()
        for mesh, mesh_keys in by_mesh.items():
            current = services.get(mesh, immutables.Map())
            updated = current.mutate()
            for key in mesh_keys:
                view = self._service_view(key)
                if updated.get(key[1]) == view:
                    continue
                changed.add(key)
                if view is None:
                    updated.pop(key[1], None)
                else:
                    updated[key[1]] = view
            services[mesh] = updated.finish()
        self._services = services.finish()
        return changed

    def _rebuild_meshes(self, touched: set[str]) -> Mapping[str, MeshView]:
        views = self._mesh_views.mutate()
        for mesh in touched:
            state = self._meshes.get(mesh)
            if state is None:
                views.pop(mesh, None)
            else:
                views[mesh] = MeshView(
                    name=mesh,
                    mtls=state.mtls,
                    services=self._services.get(mesh, immutables.Map()),
                    remote=self._remote.get(mesh, immutables.Map()),
                    permissions=tuple(
                        rule
                        for (rule_mesh, _), rule in sorted(self._permissions.items())
                        if rule_mesh == mesh
                    ),
                    destinations=self.destinations.of_mesh(mesh),
                    legacy_names=state.legacy_names,
                    reachable_backends=state.mesh_services == _REACHABLE_BACKENDS,
                )
        self._mesh_views = views.finish()
        return self._mesh_views


def _service(name: str, vip: Vip | None, endpoints: tuple[Endpoint, ...]) -> ServiceView:
    if vip is None:
        return ServiceView(name=name, vip=None, endpoints=endpoints)
    return ServiceView(name=name, vip=vip.address, vip6=vip.address6, endpoints=endpoints)
