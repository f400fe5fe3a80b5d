"""Which of Kuma's service-model resources each direction of the sync carries, and how
each is named and labelled where it lands, as Kuma's multi-zone sync does.

zone -> global: the zone's own MeshServices and MeshExternalServices (not those it got
from global), labelled ``kuma.io/origin: zone``, ``kuma.io/zone: <zone>`` and with their
display name, renamed ``<display name>-<hash>`` (registry/meshservice/naming.py).

global -> zone: the MeshServices of every *other* enabled zone, and what was created on
global (MeshExternalServices, MeshMultiZoneServices, HostnameGenerators,
MeshTrafficPermissions), labelled ``kuma.io/origin: global`` and renamed the same way, so a
MeshService has one name on global and in every zone. A zone never gets its own back.

Status is never copied: meshdns stores none (each control plane computes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.meshservice.naming import (
    MAX_LABEL_NAME,
    MAX_NAME,
    display_name,
    hashed_name,
    looks_hashed,
)
from registry.meshservice.states import (
    DISPLAY_NAME_LABEL,
    GRACE_PERIOD_LABEL,
    HOSTNAME_GENERATOR,
    MESH_EXTERNAL_SERVICE,
    MESH_MULTIZONE_SERVICE,
    MESH_SERVICE,
    NAMESPACE_LABEL,
    ORIGIN_LABEL,
    ORIGIN_ZONE,
    SERVICE_KINDS,
    ZONE_LABEL,
)
from registry.models import ZoneRow

ORIGIN_GLOBAL = "global"
MESH_TRAFFIC_PERMISSION = "MeshTrafficPermission"
Document = dict[str, Any]


class Direction(Protocol):
    """What one direction of the sync carries of the kinds it names, and how."""

    kinds: tuple[str, ...]

    async def prepare(self, source: AsyncConnection) -> None:
        """Read what deciding needs from the source, in the batch's read."""

    def carries(self, document: Document) -> bool:
        """Whether the source's resource goes to the target."""

    def copy(self, document: Document) -> Document:
        """The target's copy of a carried resource, with its name there."""

    def holds(self, document: Document) -> bool:
        """Whether a target's resource is one this direction wrote (and may replace or
        delete)."""

    def stale_copy(self, document: Document) -> str | None:
        """Where a source resource this direction does not carry may still have a copy
        from when it did (None: nowhere it may be told from another's)."""

    def gone_name(self, kind: str, mesh: str, name: str) -> tuple[str, bool]:
        """Where a source resource that is gone had its copy, as far as its name tells
        (its labels are gone with it), and whether, when no copy is there, there is
        surely none elsewhere."""

    def sweeps(self, kinds: set[str]) -> set[str]:
        """The kinds to compare whole because the changes are of `kinds`."""


def _labels(document: Document) -> dict[str, str]:
    return dict(document.get("labels") or {})


def _named(document: Document, name: str, labels: Mapping[str, str]) -> Document:
    return {**document, "name": name, "labels": dict(labels)}


def _longest(kind: str) -> int:
    # The service kinds' names are one DNS label here.
    return MAX_LABEL_NAME if kind in SERVICE_KINDS else MAX_NAME


def _hashed(document: Document, labels: Mapping[str, str], zone: str) -> str:
    """Kuma's HashedName of a copy: mesh, display name, zone and namespace labels."""
    kind = document["type"]
    return hashed_name(
        document.get("mesh") or "",
        display_name(document["name"], labels),
        zone,
        labels.get(NAMESPACE_LABEL, ""),
        max_length=_longest(kind),
    )


class ZoneToGlobalKinds:
    """zone -> global: the zone's own MeshServices and MeshExternalServices."""

    kinds: tuple[str, ...] = (MESH_SERVICE, MESH_EXTERNAL_SERVICE)

    def __init__(self, zone: str) -> None:
        self.zone = zone

    async def prepare(self, source: AsyncConnection) -> None:
        return None

    def carries(self, document: Document) -> bool:
        # Kuma's "locally originated": no origin label, or origin zone.
        return _labels(document).get(ORIGIN_LABEL, ORIGIN_ZONE) == ORIGIN_ZONE

    def copy(self, document: Document) -> Document:
        labels = _labels(document)
        labels.pop(GRACE_PERIOD_LABEL, None)
        labels.setdefault(DISPLAY_NAME_LABEL, document["name"])
        labels[ORIGIN_LABEL] = ORIGIN_ZONE
        labels[ZONE_LABEL] = self.zone
        return _named(document, _hashed(document, labels, self.zone), labels)

    def holds(self, document: Document) -> bool:
        labels = _labels(document)
        return labels.get(ORIGIN_LABEL) == ORIGIN_ZONE and labels.get(ZONE_LABEL) == self.zone

    def stale_copy(self, document: Document) -> str | None:
        # Not the zone's own (one from global, say): where its copy would be is another
        # resource's place, this zone's own one of that display name.
        return None

    def gone_name(self, kind: str, mesh: str, name: str) -> tuple[str, bool]:
        # Its display name was its name unless a label said otherwise. One named as a
        # copy is (most likely) one from global, which has no copy there.
        where = hashed_name(mesh, name, self.zone, "", max_length=_longest(kind))
        return where, looks_hashed(name)

    def sweeps(self, kinds: set[str]) -> set[str]:
        return set()


class GlobalToZoneKinds:
    """global -> zone: other zones' MeshServices, and what was created on global."""

    kinds: tuple[str, ...] = (
        MESH_SERVICE,
        MESH_EXTERNAL_SERVICE,
        MESH_MULTIZONE_SERVICE,
        HOSTNAME_GENERATOR,
        MESH_TRAFFIC_PERMISSION,
    )

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self._disabled: set[str] = set()

    async def prepare(self, source: AsyncConnection) -> None:
        self._disabled = set(
            await source.scalars(select(ZoneRow.name).where(ZoneRow.enabled.is_(False)))
        )

    def carries(self, document: Document) -> bool:
        labels = _labels(document)
        if document["type"] == MESH_SERVICE:
            # Every zone's, but to the others only, and not while its zone is disabled.
            zone = labels.get(ZONE_LABEL, "")
            return zone != self.zone and zone not in self._disabled
        return labels.get(ORIGIN_LABEL) != ORIGIN_ZONE

    def copy(self, document: Document) -> Document:
        labels = _labels(document)
        labels[ORIGIN_LABEL] = ORIGIN_GLOBAL
        labels.setdefault(DISPLAY_NAME_LABEL, document["name"])
        return _named(document, _hashed(document, labels, labels.get(ZONE_LABEL, "")), labels)

    def holds(self, document: Document) -> bool:
        return _labels(document).get(ORIGIN_LABEL) == ORIGIN_GLOBAL

    def stale_copy(self, document: Document) -> str | None:
        # A MeshService of a zone since disabled, say.
        return self.copy(document)["name"]

    def gone_name(self, kind: str, mesh: str, name: str) -> tuple[str, bool]:
        if kind == MESH_SERVICE:
            # Named on global as in the zones (same hash inputs).
            return name, True
        # One named as a copy is (most likely) a zone's on global, never carried here.
        return hashed_name(mesh, name, max_length=_longest(kind)), looks_hashed(name)

    def sweeps(self, kinds: set[str]) -> set[str]:
        # A zone enabled or disabled: its MeshServices come or go.
        return {MESH_SERVICE} if "Zone" in kinds else set()
