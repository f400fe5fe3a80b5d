"""The ``status`` of MeshServices and their kin, in Kuma's shape, from the registry's view.

Kuma's control plane writes status into the stored resource; meshdns never stores it: a
GET renders it from the view that DNS answers from, so what the API shows is what DNS
says (VIPs, hostnames, each generator's condition, the dataplanes behind a MeshService,
the MeshServices behind a MeshMultiZoneService). Lists Kuma leaves out when empty are left
out; so are zero counts.
"""

from __future__ import annotations

from typing import Any

from registry.feed.states import InboundState
from registry.feed.view import RegistryView
from registry.meshservice.destinations import Destinations, targets
from registry.meshservice.hostnames import GENERATED, Naming
from registry.meshservice.states import (
    DISPLAY_NAME_LABEL,
    MESH_EXTERNAL_SERVICE,
    MESH_MULTIZONE_SERVICE,
    NAMESPACE_LABEL,
    MeshServiceState,
    ServicePort,
)

ORIGIN_GENERATOR = "HostnameGenerator"  # an address's origin: a generator gave it


def status_of(view: RegistryView, kind: str, mesh: str, name: str) -> dict[str, Any] | None:
    """The status of resource `name` of `kind` in `mesh` as the view has it; None when the
    view does not have it (yet) or the kind has no status."""
    destinations = view.destinations
    state = destinations.service(kind, mesh, name)
    if state is None:
        return None
    status: dict[str, Any] = {}
    vip = destinations.vip(kind, mesh, name)
    if kind == MESH_EXTERNAL_SERVICE:
        if vip is not None:
            status["vip"] = {"ip": str(vip)}
    elif vip is not None:
        status["vips"] = [{"ip": str(vip)}]
    status.update(_naming(destinations.naming(kind, mesh, name)))
    if isinstance(state, MeshServiceState):
        status["dataplaneProxies"] = _dataplane_proxies(destinations, state)
    elif kind == MESH_MULTIZONE_SERVICE:
        matched = [
            {
                "name": service.labels.get(DISPLAY_NAME_LABEL, service.name),
                "namespace": service.labels.get(NAMESPACE_LABEL, ""),
                "zone": destinations.zone_of(service) or destinations.zone,
                "mesh": service.mesh,
            }
            for service in destinations.grouped(mesh, name)
        ]
        matched.sort(key=lambda item: (item["name"], item["namespace"], item["zone"], item["mesh"]))
        if matched:
            status["meshServices"] = matched
    return status


def _naming(naming: Naming | None) -> dict[str, Any]:
    if naming is None:
        return {}
    found: dict[str, Any] = {}
    if naming.addresses:
        found["addresses"] = [
            {
                "hostname": hostname,
                "origin": ORIGIN_GENERATOR,
                "hostnameGeneratorRef": {"coreName": generator},
            }
            for hostname, generator in naming.addresses
        ]
    if naming.conditions:
        found["hostnameGenerators"] = [
            {
                "hostnameGeneratorRef": {"coreName": condition.generator},
                "conditions": [
                    {
                        "type": GENERATED,
                        "status": condition.status,
                        "reason": condition.reason,
                        "message": condition.message,
                    }
                ],
            }
            for condition in naming.conditions
        ]
    return found


def _dataplane_proxies(destinations: Destinations, state: MeshServiceState) -> dict[str, int]:
    """How many dataplanes it selects (total), of them online (connected), and of them with
    a ready inbound for every port (healthy); zeros left out, as Kuma does."""
    selected = destinations.selected(state.mesh, state.name)
    counts = {
        "connected": sum(dataplane.online for dataplane in selected),
        "healthy": sum(
            all(_ready(port, dataplane.inbounds) for port in state.ports) for dataplane in selected
        ),
        "total": len(selected),
    }
    return {key: count for key, count in counts.items() if count}


def _ready(port: ServicePort, inbounds: tuple[InboundState, ...]) -> bool:
    """Whether the inbound serving `port` (by its name, else its target) is ready."""
    inbound = next(
        (i for i in inbounds if i.name is not None and i.name == port.name), None
    ) or next((i for i in inbounds if targets(port, i)), None)
    return inbound is not None and inbound.ready
