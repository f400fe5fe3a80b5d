"""The agent's copy of what its dataplane sees, as snapshots for dnsserver's Handler.

The control plane sends only what the dataplane sees (registry/agents/service_feed.py):
this zone's legacy services, other zones' it may reach, the destinations it may reach
(with only the ports within its reach), the hostname zones. So the snapshot built here
is one in which a client of the mesh that is no dataplane (whoever asks the agent) sees
all of it: its mesh view lets anyone reach any other zone's service, the control plane
having already left out what the dataplane may not. The Handler then answers as the
control plane answers the dataplane (other zones' services through its cross-zone
variant, as there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import immutables

from registry.agents.records import RecordsError, decode_destination, decode_service
from registry.snapshot import (
    ANY_SERVICE,
    Delta,
    Destination,
    MeshView,
    ServiceView,
    Snapshot,
    TrafficRule,
    destination_key,
)

# Whatever the control plane sent is the dataplane's to reach.
_ANYONE_ANYWHERE = (TrafficRule(frozenset({ANY_SERVICE}), frozenset({ANY_SERVICE})),)

T = TypeVar("T")


def carries_changes(answer: Mapping[str, Any]) -> bool:
    """Whether a records answer changes anything (an empty one only moves the revision)."""
    if answer.get("full") or "mesh" in answer or "hostnameZones" in answer:
        return True
    return any(answer.get(key) for key in _CHANGE_LISTS)


_CHANGE_LISTS = (
    "services",
    "removed",
    "remote",
    "removedRemote",
    "destinations",
    "removedDestinations",
)


class LocalRecords:
    """What the agent's dataplane sees of its mesh, kept from the answers it is sent."""

    def __init__(self, mesh: str) -> None:
        self.mesh = mesh
        self.revision = 0
        self._mtls = False
        self._legacy_names = True
        self._services: immutables.Map[str, ServiceView] = immutables.Map()
        self._remote: immutables.Map[str, ServiceView] = immutables.Map()
        self._destinations: immutables.Map[str, Destination] = immutables.Map()
        self._zones: frozenset[str] = frozenset()
        self.snapshot = Snapshot.empty()

    def apply(self, answer: Mapping[str, Any]) -> tuple[Snapshot, Delta | None]:
        """Take one dns-records answer; the new snapshot and what changed (None: all).

        Raises RecordsError, having taken nothing, for an answer it cannot read.
        """
        try:
            revision = int(answer["revision"])
            full = bool(answer.get("full"))
            services = [decode_service(item) for item in answer.get("services", ())]
            remote = [decode_service(item) for item in answer.get("remote", ())]
            destinations = [decode_destination(item) for item in answer.get("destinations", ())]
            removed = [str(name) for name in answer.get("removed", ())]
            removed_remote = [str(name) for name in answer.get("removedRemote", ())]
            removed_destinations = [str(key) for key in answer.get("removedDestinations", ())]
            mesh = answer.get("mesh") if "mesh" in answer or full else self._mesh_settings()
            mtls = bool(mesh.get("mtls")) if mesh else False
            legacy_names = bool(mesh.get("legacyNames", True)) if mesh else True
            zones = (
                frozenset(str(zone) for zone in answer["hostnameZones"])
                if "hostnameZones" in answer
                else self._zones
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise RecordsError(f"a records answer that cannot be read: {error!r}") from None
        mesh_changed = (mtls, legacy_names) != (self._mtls, self._legacy_names)
        self._mtls, self._legacy_names = mtls, legacy_names
        self._services = _applied(self._services, full, services, removed, _service_name)
        self._remote = _applied(self._remote, full, remote, removed_remote, _service_name)
        self._destinations = _applied(
            self._destinations, full, destinations, removed_destinations, _destination_key
        )
        zones_changed = zones != self._zones
        self._zones = zones
        self.revision = revision
        self.snapshot = Snapshot(
            revision=revision,
            meshes={
                self.mesh: MeshView(
                    name=self.mesh,
                    mtls=mtls,
                    services=self._services,
                    remote=self._remote,
                    permissions=_ANYONE_ANYWHERE,
                    destinations=self._destinations,
                    legacy_names=legacy_names,
                )
            },
            hostname_zones=zones,
        )
        if full:
            return self.snapshot, None
        return self.snapshot, Delta(
            services=frozenset(
                (self.mesh, name) for name in _names(services, removed, _service_name)
            ),
            meshes=frozenset({self.mesh}) if mesh_changed else frozenset(),
            remote=frozenset({self.mesh}) if remote or removed_remote else frozenset(),
            destinations=frozenset(
                (self.mesh, key)
                for key in _names(destinations, removed_destinations, _destination_key)
            ),
            hostname_zones=zones_changed,
        )

    def _mesh_settings(self) -> dict[str, Any]:
        return {"mtls": self._mtls, "legacyNames": self._legacy_names}


def _applied(
    held: immutables.Map[str, T],
    full: bool,
    upserts: list[T],
    removed: list[str],
    key: Callable[[T], str],
) -> immutables.Map[str, T]:
    """``held`` with ``upserts`` in and ``removed`` out; only ``upserts`` when ``full``."""
    if full:
        return immutables.Map({key(item): item for item in upserts})
    mutation = held.mutate()
    for item in upserts:
        mutation[key(item)] = item
    for name in removed:
        mutation.pop(name, None)
    return mutation.finish()


def _service_name(service: ServiceView) -> str:
    return service.name


def _destination_key(destination: Destination) -> str:
    return destination_key(destination.kind, destination.name)


def _names(upserts: list[T], removed: list[str], key: Callable[[T], str]) -> set[str]:
    return {key(item) for item in upserts} | set(removed)
