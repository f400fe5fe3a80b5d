"""Which control plane takes which writes: the one rule every write path goes through.

A zone gets its meshes and traffic permissions from global; global gets dataplanes, zone
ingresses and zone egresses from the zones; Zone resources exist on global only; a
standalone control plane takes everything but zones (DESIGN, "Multi-zone"). Kuma's
service model goes where Kuma has it: MeshServices are written in zones and
MeshMultiZoneServices on global; MeshExternalServices, HostnameGenerators and
MeshTrafficPermissions anywhere, and each travels as Kuma syncs it
(docs/service-model.md).

Writes come two ways. *Local* writes are made by this control plane's own callers: the
API (PUT, DELETE, ``POST /apply``), dataplane agents (connect, heartbeat, disconnect) and
the liveness sweeps. *Replicated* writes are made by the sync worker, copying what
another control plane holds. :meth:`registry.store.Store.writing` checks every change a
transaction records against :func:`check_write`, so no path can write what its mode does
not take; the API and the agent routes also call it first, to answer 405 before they
read a body.
"""

from __future__ import annotations

from enum import StrEnum

from registry.errors import ReadOnly

STANDALONE, ZONE, GLOBAL = "standalone", "zone", "global"
MODES = (STANDALONE, ZONE, GLOBAL)


class Origin(StrEnum):
    """Who makes a write."""

    LOCAL = "local"  # the API, dataplane agents, liveness
    REPLICATION = "replication"  # the sync worker, copying another control plane's state


# The modes whose control planes take local writes of each resource type.
_LOCAL: dict[str, frozenset[str]] = {
    "Mesh": frozenset({STANDALONE, GLOBAL}),
    "TrafficPermission": frozenset({STANDALONE, GLOBAL}),
    "Zone": frozenset({GLOBAL}),
    "Dataplane": frozenset({STANDALONE, ZONE}),
    "ZoneIngress": frozenset({STANDALONE, ZONE}),
    "ZoneEgress": frozenset({STANDALONE, ZONE}),
    "MeshService": frozenset({STANDALONE, ZONE}),
    "MeshExternalService": frozenset(MODES),
    "MeshMultiZoneService": frozenset({STANDALONE, GLOBAL}),
    "HostnameGenerator": frozenset(MODES),
    "MeshTrafficPermission": frozenset(MODES),
}
# What the sync worker writes into a control plane of each mode.
_REPLICATED: dict[str, frozenset[str]] = {
    GLOBAL: frozenset(
        {
            "Dataplane",
            "ZoneIngress",
            "ZoneEgress",
            "Zone",
            "MeshService",
            "MeshExternalService",
            "HostnameGenerator",
            "MeshTrafficPermission",
        }
    ),
    ZONE: frozenset(
        {
            "Mesh",
            "TrafficPermission",
            "ZoneIngress",
            # From other zones (through global), and what global holds.
            "MeshService",
            "MeshExternalService",
            "MeshMultiZoneService",
            "HostnameGenerator",
            "MeshTrafficPermission",
        }
    ),
    STANDALONE: frozenset(),
}
# Where a resource read-only here is written instead.
_SOURCE = {ZONE: "the global control plane", GLOBAL: "the zone control planes"}
_HOW = {
    "Dataplane": " (a dataplane agent connects to its zone's control plane: "
    "`meshdns dp run --cp URL-of-the-zone-control-plane`)",
}


def writable(mode: str, kind: str, origin: Origin = Origin.LOCAL) -> bool:
    """Whether a control plane in `mode` takes a write of `kind` from `origin`."""
    if origin is Origin.REPLICATION:
        return kind in _REPLICATED.get(mode, frozenset())
    return mode in _LOCAL.get(kind, frozenset())


def check_write(mode: str, kind: str, origin: Origin = Origin.LOCAL) -> None:
    """Raise ReadOnly (405) unless a control plane in `mode` takes this write."""
    if writable(mode, kind, origin):
        return
    if origin is Origin.REPLICATION:
        raise ReadOnly(f"{kind} resources are not replicated into a {mode} control plane")
    if kind == "Zone":
        raise ReadOnly(f"Zone resources exist on a global control plane only; this is {mode}")
    if kind not in _LOCAL:
        raise ReadOnly(f"{kind} resources are not written on a {mode} control plane")
    source = _SOURCE.get(mode, "another control plane")
    raise ReadOnly(
        f"{kind} resources are read-only on a {mode} control plane: they are replicated "
        f"from {source}; write them there{_HOW.get(kind, '')}"
    )
