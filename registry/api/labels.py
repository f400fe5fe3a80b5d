"""The labels Kuma adds to its service model's resources when they are written through
the API (PUT and ``POST /apply``), each only where the resource does not set it.

A standalone or zone control plane marks what it writes as its own: ``kuma.io/origin:
zone``, ``kuma.io/zone`` (its ``--zone``, else "default") and ``kuma.io/env: universal``;
that is what the default HostnameGenerators select. Every mesh-scoped kind gets
``kuma.io/mesh``. MeshMultiZoneServices, written on global, get only that, and so does
everything a global control plane writes.
"""

from __future__ import annotations

from registry.schema import ZONE_TAG, MeshScoped, Resource
from registry.write_rules import GLOBAL

MESH_LABEL = "kuma.io/mesh"
ORIGIN_LABEL = "kuma.io/origin"
ENV_LABEL = "kuma.io/env"
DEFAULT_ZONE = "default"  # Kuma's zone name when none is configured

# Kuma's types that a zone provides (KDS flag ProvidedByZone), and those it labels at all.
_ZONE_PROVIDED = frozenset(
    {"MeshService", "MeshExternalService", "HostnameGenerator", "MeshTrafficPermission"}
)
_LABELLED = _ZONE_PROVIDED | {"MeshMultiZoneService"}


def with_computed_labels(resource: Resource, mode: str, zone: str | None) -> Resource:
    """`resource` with the labels Kuma computes on a write to a control plane in `mode`
    (of zone `zone`); other kinds of resources as they are."""
    if resource.type not in _LABELLED:
        return resource
    labels = dict(resource.labels or {})
    computed: dict[str, str] = {}
    if isinstance(resource, MeshScoped):
        computed[MESH_LABEL] = resource.mesh
    if mode != GLOBAL and resource.type in _ZONE_PROVIDED:
        computed[ORIGIN_LABEL] = "zone"
        if labels.get(ORIGIN_LABEL, "zone") != "global":
            computed[ZONE_TAG] = zone or DEFAULT_ZONE
            computed[ENV_LABEL] = "universal"
    added = {key: value for key, value in computed.items() if key not in labels}
    if not added:
        return resource
    return resource.model_copy(update={"labels": {**labels, **added}})
