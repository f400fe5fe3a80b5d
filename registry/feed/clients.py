"""Who asks from each address, as the registry's view publishes it: the mesh of the
dataplanes there, their services and their reach (the snapshot's ``dataplane_meshes``,
``client_services`` and ``client_reach``), kept current address by address."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import immutables

from registry.feed.states import DataplaneKey, DataplaneState
from registry.snapshot import IPAddress, Reach


class Clients:
    """The client maps of the view's dataplanes (``owners``: who has each address), as
    persistent maps a snapshot can hold."""

    def __init__(
        self,
        owners: Mapping[IPAddress, set[DataplaneKey]],
        dataplanes: Mapping[DataplaneKey, DataplaneState],
    ) -> None:
        self._owners = owners
        self._dataplanes = dataplanes
        self.meshes: immutables.Map[IPAddress, str] = immutables.Map()
        self.services: immutables.Map[IPAddress, frozenset[str]] = immutables.Map()
        self.reach: immutables.Map[IPAddress, Reach] = immutables.Map()

    def build(self) -> bool:
        """All of the maps at once (a cold load touches every address anyway); whether
        there are any clients."""
        self.meshes = immutables.Map(
            (address, mesh)
            for address, owners in self._owners.items()
            if (mesh := _only_mesh(owners)) is not None
        )
        self.services = immutables.Map(
            (address, self._services_at(address, mesh)) for address, mesh in self.meshes.items()
        )
        self.reach = immutables.Map(
            (address, reach)
            for address, mesh in self.meshes.items()
            if (reach := self._reach_at(address, mesh)) is not None
        )
        return bool(self.meshes)

    def rebuild(self, addresses: Iterable[IPAddress]) -> bool:
        """Redo the maps at ``addresses``; whether any of them changed."""
        meshes = self.meshes.mutate()
        services = self.services.mutate()
        reaches = self.reach.mutate()
        changed = False
        for address in addresses:
            mesh = _only_mesh(self._owners.get(address))
            served = self._services_at(address, mesh) if mesh is not None else None
            reach = self._reach_at(address, mesh) if mesh is not None else None
            if (
                meshes.get(address) == mesh
                and services.get(address) == served
                and reaches.get(address) == reach
            ):
                continue
            changed = True
            if mesh is None or served is None:
                meshes.pop(address, None)
                services.pop(address, None)
            else:
                meshes[address] = mesh
                services[address] = served
            if reach is None:
                reaches.pop(address, None)
            else:
                reaches[address] = reach
        self.meshes = meshes.finish()
        self.services = services.finish()
        self.reach = reaches.finish()
        return changed

    def _services_at(self, address: IPAddress, mesh: str) -> frozenset[str]:
        """The services of the dataplanes of `mesh` at `address`."""
        return frozenset(
            service
            for key in self._owners.get(address, ())
            if key[0] == mesh
            for service in self._dataplanes[key].services
        )

    def _reach_at(self, address: IPAddress, mesh: str) -> Reach | None:
        """The reach of the dataplanes of `mesh` at `address` (None: unnarrowed)."""
        owners = self._owners.get(address, ())
        if not any(self._dataplanes[key].reachable is not None for key in owners):
            return None  # most addresses: no dataplane narrows
        # In name order, so that a full load and a followed change give equal reaches.
        return Reach.union(
            self._dataplanes[key].reachable for key in sorted(owners) if key[0] == mesh
        )


def _only_mesh(owners: set[DataplaneKey] | None) -> str | None:
    """The mesh of the dataplanes at an address, when they are all of one mesh.

    An address held by dataplanes of two meshes selects neither: its clients get the
    default mesh, so a dataplane of one mesh cannot take over another mesh's view by
    registering at its address (docs/dns.md, "Which mesh a client sees").
    """
    if not owners:
        return None
    meshes = {mesh for mesh, _ in owners}
    return next(iter(meshes)) if len(meshes) == 1 else None
