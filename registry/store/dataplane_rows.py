"""The columns a dataplane is stored in, besides its JSON: what snapshots, tag filters and
MeshService selectors read without parsing it. Every path that writes dataplanes (one at
a time, or in bulk) builds its rows here."""

from __future__ import annotations

from typing import Any

from registry.schema import ZONE_TAG, Dataplane

# transparentProxying's fields that narrow what a dataplane may resolve, by column key.
_REACHABLE = (("services", "reachableServices"), ("backends", "reachableBackends"))


def reachable(dataplane: Dataplane) -> dict[str, Any] | None:
    """``{"services": [...], "backends": {...}}`` of those of transparentProxying's
    reachableServices and reachableBackends that are set; None when neither is."""
    proxying = dataplane.networking.transparent_proxying or {}
    found = {key: proxying[field] for key, field in _REACHABLE if proxying.get(field) is not None}
    return found or None


def dataplane_columns(dataplane: Dataplane) -> dict[str, Any]:
    """The dataplane row's values, but for its mesh, name and times."""
    return {
        "address": dataplane.networking.address,
        "advertised_address": dataplane.networking.advertised_address,
        "zone": (dataplane.labels or {}).get(ZONE_TAG),
        "labels": dataplane.labels or None,
        "reachable": reachable(dataplane),
        "spec": dataplane.dump(),
    }


def inbound_rows(dataplane_id: int, dataplane: Dataplane) -> list[dict[str, Any]]:
    """The rows of a dataplane's inbounds, in their order."""
    return [
        {
            "dataplane_id": dataplane_id,
            "position": position,
            "name": inbound.name or None,
            "service": inbound.service,
            "address": inbound.address or dataplane.networking.address,
            "port": inbound.port,
            "ready": inbound.ready,
        }
        for position, inbound in enumerate(dataplane.networking.inbound)
    ]
