"""The resources the store keeps whole as JSON (ingresses, egresses, traffic permissions,
zones): each type's table and model."""

from __future__ import annotations

from typing import Any

from registry.models import TrafficPermissionRow, ZoneEgressRow, ZoneIngressRow, ZoneRow
from registry.schema import TrafficPermission, Zone, ZoneEgress, ZoneIngress

KeptWhole = ZoneIngress | ZoneEgress | TrafficPermission | Zone

TABLES: dict[str, Any] = {
    "ZoneIngress": ZoneIngressRow,
    "ZoneEgress": ZoneEgressRow,
    "TrafficPermission": TrafficPermissionRow,
    "Zone": ZoneRow,
}
MODELS: dict[str, type[KeptWhole]] = {
    "ZoneIngress": ZoneIngress,
    "ZoneEgress": ZoneEgress,
    "TrafficPermission": TrafficPermission,
    "Zone": Zone,
}


def missing(kind: str, mesh: str, name: str) -> str:
    """The NotFound message for a resource of `kind` (a traffic permission: in `mesh`)."""
    where = f' in mesh "{mesh}"' if kind == "TrafficPermission" else ""
    return f'{kind} "{name}" not found{where}'
