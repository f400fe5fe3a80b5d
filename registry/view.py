"""The registry as a reader follows it: changed state in, immutable snapshots out.

A reader (the DNS server, later the sync worker and the dataplane agent) feeds this view
the current state of whatever the change feed says changed; it answers with a new
Snapshot and a Delta saying what differs. The snapshot's maps are persistent
(``immutables.Map``), so a change costs in proportion to the change, not to the registry,
and every snapshot handed out stays valid and unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import immutables

from registry.snapshot import Delta, Endpoint, IPAddress, MeshView, ServiceView, Snapshot

ServiceKey = tuple[str, str]  # (mesh, service)
DataplaneKey = tuple[str, str]  # (mesh, dataplane name)
Vip = tuple[IPv4Address | None, IPv6Address | None]


@dataclass(frozen=True, slots=True)
class InboundState:
    service: str
    address: IPAddress
    port: int
    ready: bool


@dataclass(frozen=True, slots=True)
class DataplaneState:
    """What a snapshot needs of one dataplane."""

    mesh: str
    name: str
    address: IPAddress
    advertised: IPAddress | None
    inbounds: tuple[InboundState, ...]
    # False once an agent-connected dataplane has missed its heartbeats.
    online: bool = True

    @property
    def services(self) -> set[str]:
        return {inbound.service for inbound in self.inbounds}

    @property
    def addresses(self) -> tuple[IPAddress, ...]:
        """Its distinct addresses; most inbounds share the dataplane's own, and hashing an
        address (ipaddress hashes its hex string) is what a large load spends most on."""
        others = [inbound.address for inbound in self.inbounds if inbound.address != self.address]
        return (self.address, *dict.fromkeys(others)) if others else (self.address,)


class RegistryView:
    """Mutable state of the registry, producing immutable snapshots after each change."""

    def __init__(self) -> None:
        self._meshes: dict[str, bool] = {}  # name -> mTLS on
        self._dataplanes: dict[DataplaneKey, DataplaneState] = {}
        self._members: dict[ServiceKey, set[str]] = {}  # dataplane names of each service
        self._vips: dict[ServiceKey, Vip] = {}
        self._owners: dict[IPAddress, set[DataplaneKey]] = {}  # who has each address
        self._services: immutables.Map[str, immutables.Map[str, ServiceView]] = immutables.Map()
        self._clients: immutables.Map[IPAddress, str] = immutables.Map()
        self._mesh_views: immutables.Map[str, MeshView] = immutables.Map()
        self.snapshot = Snapshot.empty()

    def apply(
        self,
        revision: int,
        meshes: Mapping[str, bool | None],
        dataplanes: Mapping[DataplaneKey, DataplaneState | None],
        vips: Mapping[ServiceKey, Vip | None],
    ) -> Delta:
        """Take in the current state of what changed (None: it is gone); publish a snapshot.

        `vips` must cover every service of the changed dataplanes, before and after.
        """
        touched_services: set[ServiceKey] = set()
        touched_addresses: set[IPAddress] = set()
        cold = not self._dataplanes
        for key, state in dataplanes.items():
            old = self._dataplanes.pop(key, None)
            if old is not None:
                self._forget(old, touched_services, touched_addresses)
            if state is not None:
                # A cold load rebuilds the whole client map; no need to note addresses.
                self._remember(state, touched_services, None if cold else touched_addresses)
        for service_key, vip in vips.items():
            if vip is None:
                self._vips.pop(service_key, None)
            else:
                self._vips[service_key] = vip
            touched_services.add(service_key)
        touched_meshes: set[str] = set()
        for mesh, mtls in meshes.items():
            if mtls is None:
                self._meshes.pop(mesh, None)
            else:
                self._meshes[mesh] = mtls
            touched_meshes.add(mesh)

        changed_services = self._rebuild_services(touched_services)
        if cold:
            clients_changed = self._build_clients()
        else:
            clients_changed = self._rebuild_clients(touched_addresses)
        self.snapshot = Snapshot(
            revision=revision,
            meshes=self._rebuild_meshes(touched_meshes | {mesh for mesh, _ in changed_services}),
            dataplane_meshes=self._clients,
        )
        return Delta(
            services=frozenset(changed_services),
            meshes=frozenset(touched_meshes),
            clients=clients_changed,
        )

    def services_of(self, keys: Iterable[DataplaneKey]) -> set[ServiceKey]:
        """The services the given dataplanes serve now, as this view knows them."""
        return {
            (state.mesh, service)
            for key in keys
            if (state := self._dataplanes.get(key)) is not None
            for service in state.services
        }

    def dataplane(self, key: DataplaneKey) -> DataplaneState | None:
        return self._dataplanes.get(key)

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
        vip, vip6 = self._vips.get(key, (None, None))
        return ServiceView(name=service, vip=vip, vip6=vip6, endpoints=tuple(endpoints))

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

    def _build_clients(self) -> bool:
        """All of the client map at once: a cold load touches every address anyway."""
        # The first mesh by name, so an address in two meshes always maps the same way.
        self._clients = immutables.Map(
            (address, min(owners)[0]) for address, owners in self._owners.items()
        )
        return bool(self._clients)

    def _rebuild_clients(self, addresses: set[IPAddress]) -> bool:
        clients = self._clients.mutate()
        changed = False
        for address in addresses:
            owners = self._owners.get(address)
            # The first mesh by name, so an address in two meshes always maps the same way.
            mesh = min(owners)[0] if owners else None
            if clients.get(address) == mesh:
                continue
            changed = True
            if mesh is None:
                clients.pop(address, None)
            else:
                clients[address] = mesh
        self._clients = clients.finish()
        return changed

    def _rebuild_meshes(self, touched: set[str]) -> Mapping[str, MeshView]:
        views = self._mesh_views.mutate()
        for mesh in touched:
            mtls = self._meshes.get(mesh)
            if mtls is None:
                views.pop(mesh, None)
            else:
                views[mesh] = MeshView(
                    name=mesh, mtls=mtls, services=self._services.get(mesh, immutables.Map())
                )
        self._mesh_views = views.finish()
        return self._mesh_views
