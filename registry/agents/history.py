"""What the registry's snapshots changed, revision by revision, with what each changed
thing was before: so the records feed can tell what an agent holding revision R holds,
and send it only what it would see differently now.

Each published delta is written down as entries: a legacy service, another zone's
service or a destination that changed, the mesh's rules of who sees what (mTLS,
permissions, meshServices mode) when they changed, the hostname zones when they changed;
each with its value before the change (None: it did not exist). The first entry after R
for a thing holds its value at R. Values are kept until the history's weight (entries
plus the endpoints their values hold) outgrows its bound; then the oldest half goes,
and agents from before that get the whole of what they see.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from typing import Any

from registry.snapshot import Delta, Destination, MeshView, ServiceView, Snapshot

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Part(Enum):
    """The kinds of things of a mesh an agent holds, by the MeshView map they are in."""

    SERVICES = "services"
    REMOTE = "remote"
    DESTINATIONS = "destinations"

    def of(self, view: MeshView | None) -> Mapping[str, Any]:
        """This part's map in ``view`` (none in a mesh that does not exist)."""
        return _EMPTY if view is None else getattr(view, self.value)


_RULES = "rules"  # an entry for the mesh's rules of who sees what
_ZONES = "zones"  # an entry for the hostname zones (of no mesh)
_NO_MESH = ""

# (revision, mesh, Part or _RULES or _ZONES, key, value before)
_Entry = tuple[int, str, Part | str, str, Any]


def rules(view: MeshView | None) -> MeshView | None:
    """``view`` without its services and destinations: what decides who sees what of
    them (mTLS, permissions, legacy names, meshServices mode), and cheap to keep."""
    if view is None:
        return None
    return replace(view, services=_EMPTY, remote=_EMPTY, destinations=_EMPTY)


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in one mesh after some revision: each changed thing's value at that
    revision (``before``), the mesh's rules then when they changed (``rules_changed``),
    the hostname zones then when they changed (None: unchanged)."""

    before: Mapping[tuple[Part, str], Any] = field(default_factory=dict)
    rules_changed: bool = False
    rules_before: MeshView | None = None
    zones_before: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return bool(self.before) or self.rules_changed or self.zones_before is not None

    def keys(self, part: Part) -> Iterator[str]:
        return (key for changed, key in self.before if changed is part)


class History:
    """The entries of the recent snapshots' changes, oldest first."""

    def __init__(self, weight: int) -> None:
        self._bound = weight
        self._weight = 0
        self._entries: list[_Entry] = []
        self._weights: list[int] = []
        self.horizon = 0  # changes after R are known for R >= this

    def restart(self, revision: int) -> None:
        """Forget everything: a snapshot that is not known to follow the last."""
        self._entries.clear()
        self._weights.clear()
        self._weight = 0
        self.horizon = revision

    def record(self, old: Snapshot, new: Snapshot, delta: Delta) -> None:
        """Write down what ``delta`` says changed from ``old`` to ``new``."""
        revision = new.revision
        seen: set[tuple[str, Part, str]] = set()

        def add(mesh: str, part: Part, key: str, before: Any) -> None:
            if (mesh, part, key) not in seen:
                seen.add((mesh, part, key))
                self._add((revision, mesh, part, key, before), _weight(before))

        for mesh, name in delta.services:
            add(mesh, Part.SERVICES, name, Part.SERVICES.of(old.meshes.get(mesh)).get(name))
        for mesh, key in delta.destinations:
            add(mesh, Part.DESTINATIONS, key, Part.DESTINATIONS.of(old.meshes.get(mesh)).get(key))
        for mesh in sorted(delta.meshes | delta.remote):
            before, after = old.meshes.get(mesh), new.meshes.get(mesh)
            if rules(before) != rules(after):
                self._add((revision, mesh, _RULES, "", rules(before)), 1)
            # A mesh-wide change names none of what it changed; its remote services
            # changes are named nowhere: both are found by comparing.
            parts = list(Part) if mesh in delta.meshes else [Part.REMOTE]
            for part in parts:
                then, now = part.of(before), part.of(after)
                if then is now:
                    continue
                for key in {*then, *now}:
                    if then.get(key) is not now.get(key):
                        add(mesh, part, key, then.get(key))
        if old.hostname_zones != new.hostname_zones:
            self._add((revision, _NO_MESH, _ZONES, "", old.hostname_zones), 1)
        if self._weight > self._bound:
            self._trim()

    def changes(self, mesh: str, after: int) -> Changes | None:
        """What changed in ``mesh`` after revision ``after``; None when that is not known
        (from before the horizon)."""
        if after < self.horizon:
            return None
        before: dict[tuple[Part, str], Any] = {}
        rules_changed = False
        rules_before: MeshView | None = None
        zones_before: frozenset[str] | None = None
        start = bisect.bisect_right(self._entries, after, key=lambda entry: entry[0])
        for _, entry_mesh, part, key, value in self._entries[start:]:
            if entry_mesh == mesh:
                if isinstance(part, Part):
                    before.setdefault((part, key), value)
                elif not rules_changed:
                    rules_changed, rules_before = True, value
            elif part == _ZONES and zones_before is None:
                zones_before = value
        return Changes(before, rules_changed, rules_before, zones_before)

    def _add(self, entry: _Entry, weight: int) -> None:
        self._entries.append(entry)
        self._weights.append(weight)
        self._weight += weight

    def _trim(self) -> None:
        """Drop the oldest entries, down to half the bound, at a revision boundary."""
        dropped = 0
        cut = 0
        while cut < len(self._entries) and self._weight - dropped > self._bound // 2:
            dropped += self._weights[cut]
            cut += 1
        while cut < len(self._entries) and self._entries[cut][0] == self._entries[cut - 1][0]:
            dropped += self._weights[cut]
            cut += 1
        self.horizon = self._entries[cut - 1][0]
        del self._entries[:cut]
        del self._weights[:cut]
        self._weight -= dropped


def _weight(value: Any) -> int:
    """What keeping ``value`` costs, in endpoints (at least one)."""
    if isinstance(value, ServiceView):
        return 1 + len(value.endpoints)
    if isinstance(value, Destination):
        return 1 + sum(len(port.endpoints) for port in value.ports)
    return 1
