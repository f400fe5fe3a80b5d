"""The resources the store keeps whole as JSON (ingresses, egresses, traffic permissions,
zones, and Kuma's service model: MeshServices and their kin, HostnameGenerators,
MeshTrafficPermissions): each type's table and model, and which belong to a mesh."""

from __future__ import annotations

from typing import Any

from registry.models import (
    HostnameGeneratorRow,
    MeshExternalServiceRow,
    MeshMultiZoneServiceRow,
    MeshServiceRow,
    MeshTrafficPermissionRow,
    TrafficPermissionRow,
    ZoneEgressRow,
    ZoneIngressRow,
    ZoneRow,
)
from registry.schema import (
    HostnameGenerator,
    MeshExternalService,
    MeshMultiZoneService,
    MeshService,
    MeshTrafficPermission,
    TrafficPermission,
    Zone,
    ZoneEgress,
    ZoneIngress,
)

KeptWhole = (
    ZoneIngress
    | ZoneEgress
    | TrafficPermission
    | Zone
    | MeshService
    | MeshExternalService
    | MeshMultiZoneService
    | HostnameGenerator
    | MeshTrafficPermission
)

TABLES: dict[str, Any] = {
    "ZoneIngress": ZoneIngressRow,
    "ZoneEgress": ZoneEgressRow,
    "TrafficPermission": TrafficPermissionRow,
    "Zone": ZoneRow,
    "MeshService": MeshServiceRow,
    "MeshExternalService": MeshExternalServiceRow,
    "MeshMultiZoneService": MeshMultiZoneServiceRow,
    "HostnameGenerator": HostnameGeneratorRow,
    "MeshTrafficPermission": MeshTrafficPermissionRow,
}
MODELS: dict[str, type[KeptWhole]] = {
    "ZoneIngress": ZoneIngress,
    "ZoneEgress": ZoneEgress,
    "TrafficPermission": TrafficPermission,
    "Zone": Zone,
    "MeshService": MeshService,
    "MeshExternalService": MeshExternalService,
    "MeshMultiZoneService": MeshMultiZoneService,
    "HostnameGenerator": HostnameGenerator,
    "MeshTrafficPermission": MeshTrafficPermission,
}
# The kinds kept whole that belong to a mesh (deleted with it).
MESH_SCOPED = (
    "TrafficPermission",
    "MeshService",
    "MeshExternalService",
    "MeshMultiZoneService",
    "MeshTrafficPermission",
)
# The kinds that hold a VIP, each from its own range (registry/store/vip_ranges.py).
SERVICE_KINDS = ("MeshService", "MeshExternalService", "MeshMultiZoneService")


def missing(kind: str, mesh: str, name: str) -> str:
    """The NotFound message for a resource of `kind` (a mesh-scoped one: in `mesh`)."""
    where = f' in mesh "{mesh}"' if kind in MESH_SCOPED else ""
    return f'{kind} "{name}" not found{where}'
