"""Which dataplanes each MeshService selects, kept current as both change.

A MeshService selects the dataplanes of its mesh and zone that some inbound of has all
its ``dataplaneTags``, or the one its ``dataplaneRef`` names, or those whose labels have
all its ``dataplaneLabels``. Selectors on kuma.io/service (what generated MeshServices
have) are indexed by that service, those by name by the name, so a dataplane's change
rechecks only the MeshServices that may select it, plus those selecting otherwise in its
mesh, which are few.

It also says which inbound tags and dataplane labels the selectors ask for: the view
keeps only those of each dataplane (the cold load reads only those).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from registry.feed.states import DataplaneKey, DataplaneState, ServiceKey
from registry.meshservice.states import MeshServiceState, frozen_labels, matches
from registry.schema.fields import SERVICE_TAG

Named = tuple[str, str]  # (mesh, MeshService name)


def selects(state: MeshServiceState, zone: str | None, dataplane: DataplaneState) -> bool:
    """Whether `state` (a MeshService of `zone`, None: this one) selects `dataplane`."""
    if dataplane.zone != zone:
        return False
    selector = state.selector
    if selector.tags is not None:
        return any(inbound.has_tags(selector.tags) for inbound in dataplane.inbounds)
    if selector.dataplane is not None:
        return dataplane.name == selector.dataplane
    if selector.labels is not None:
        return matches(selector.labels, dataplane.labels)
    return False


class Selection:
    """The dataplanes each MeshService selects.

    Changes come in two steps: :meth:`put` the MeshServices that changed, then, once the
    dataplanes are current, :meth:`dataplanes_changed` and :meth:`settle`, which say
    whose selection (or a selected dataplane) changed.
    """

    def __init__(
        self,
        dataplanes: Mapping[DataplaneKey, DataplaneState],
        members: Mapping[ServiceKey, set[str]],
        zone_of: Callable[[MeshServiceState], str | None],
    ) -> None:
        # The view's own maps, read here: every dataplane, and who serves each service.
        self._dataplanes = dataplanes
        self._members = members
        self._zone_of = zone_of
        self._services: dict[Named, MeshServiceState] = {}
        self._selected: dict[Named, set[str]] = {}
        self._by_service: dict[ServiceKey, set[str]] = {}
        self._by_dataplane: dict[DataplaneKey, set[str]] = {}
        self._unindexed: dict[str, set[str]] = {}  # mesh -> MeshServices indexed by neither
        self._pending: set[Named] = set()  # to select from scratch at settle()
        self._tag_keys: Counter[str] = Counter()
        self._label_keys: Counter[str] = Counter()

    def selected(self, key: Named) -> set[str]:
        """The names of the dataplanes MeshService `key` selects (of its mesh)."""
        return self._selected.get(key, set())

    def put(self, key: Named, state: MeshServiceState | None) -> None:
        old = self._services.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        if state is None:
            self._selected.pop(key, None)
            self._pending.discard(key)
            return
        self._services[key] = state
        self._index(key, state)
        if old is None or old.selector != state.selector or old.labels != state.labels:
            self._pending.add(key)  # its zone comes from its labels

    def dataplanes_changed(
        self, changes: Iterable[tuple[DataplaneState | None, DataplaneState | None]]
    ) -> set[Named]:
        """Take in changed dataplanes (old, new); the MeshServices that selected or select
        one of them."""
        touched: set[Named] = set()
        if len(self._services) == len(self._pending):
            return touched  # every MeshService is selected from scratch anyway
        for old, new in changes:
            some = new or old
            assert some is not None
            for name in self._candidates(old, new):
                key = (some.mesh, name)
                if key in self._pending:
                    continue
                selected = self._selected.setdefault(key, set())
                was = some.name in selected
                state = self._services[key]
                now = new is not None and selects(state, self._zone_of(state), new)
                if now:
                    selected.add(some.name)
                elif was:
                    selected.discard(some.name)
                if was or now:
                    touched.add(key)
        return touched

    def settle(self) -> set[Named]:
        """Select from scratch for the MeshServices put since the last settle; them."""
        pending, self._pending = self._pending, set()
        scanned: dict[str, list[Named]] = {}  # mesh -> those that need every dataplane
        for key in pending:
            state = self._services[key]
            zone = self._zone_of(state)
            candidates = self._indexed_candidates(state)
            if candidates is None:
                scanned.setdefault(key[0], []).append(key)
                continue
            mesh = key[0]
            if state.selector.tags is not None and len(state.selector.tags) == 1:
                # Serving the service is being selected (what generated ones ask): only
                # the zone is left to check.
                self._selected[key] = {
                    name
                    for name in candidates
                    if (dataplane := self._dataplanes.get((mesh, name))) is not None
                    and dataplane.zone == zone
                }
                continue
            self._selected[key] = {
                name
                for name in candidates
                if (dataplane := self._dataplanes.get((mesh, name))) is not None
                and selects(state, zone, dataplane)
            }
        if scanned:
            for key in (key for keys in scanned.values() for key in keys):
                self._selected[key] = set()
            # One pass over the dataplanes for all of them.
            for (mesh, name), dataplane in self._dataplanes.items():
                for key in scanned.get(mesh, ()):
                    state = self._services[key]
                    if selects(state, self._zone_of(state), dataplane):
                        self._selected[key].add(name)
        return pending

    def kept(self, state: DataplaneState) -> DataplaneState:
        """`state` with only the inbound tags and labels some selector asks for."""
        inbounds = state.inbounds
        if not state.labels:
            for inbound in inbounds:
                if inbound.tags:
                    break
            else:
                return state  # what a cold load reads when no selector asks for either
        if any(set(inbound.tags) - self._tag_keys.keys() for inbound in inbounds):
            inbounds = tuple(
                replace(inbound, tags=_only(inbound.tags, self._tag_keys)) for inbound in inbounds
            )
        labels = state.labels
        if set(labels) - self._label_keys.keys():
            labels = _only(labels, self._label_keys)
        if inbounds is state.inbounds and labels is state.labels:
            return state
        return replace(state, inbounds=inbounds, labels=labels)

    # -- indexes ----------------------------------------------------------------------------

    def _indexed_candidates(self, state: MeshServiceState) -> Iterable[str] | None:
        """The dataplanes that may be selected, where an index says; None: any may."""
        selector = state.selector
        if selector.tags is not None and SERVICE_TAG in selector.tags:
            return list(self._members.get((state.mesh, selector.tags[SERVICE_TAG]), ()))
        if selector.dataplane is not None:
            return [selector.dataplane]
        if selector.tags is None and selector.labels is None:
            return []  # no selector: nothing
        return None

    def _candidates(self, old: DataplaneState | None, new: DataplaneState | None) -> set[str]:
        some = new or old
        assert some is not None
        mesh = some.mesh
        found = set(self._unindexed.get(mesh, ()))
        found.update(self._by_dataplane.get((mesh, some.name), ()))
        for state in (old, new):
            if state is not None:
                for inbound in state.inbounds:
                    found.update(self._by_service.get((mesh, inbound.service), ()))
        return found

    def _index(self, key: Named, state: MeshServiceState) -> None:
        mesh, name = key
        selector = state.selector
        if selector.tags is not None and SERVICE_TAG in selector.tags:
            self._by_service.setdefault((mesh, selector.tags[SERVICE_TAG]), set()).add(name)
        elif selector.dataplane is not None:
            self._by_dataplane.setdefault((mesh, selector.dataplane), set()).add(name)
        elif selector.tags is not None or selector.labels is not None:
            self._unindexed.setdefault(mesh, set()).add(name)
        self._tag_keys.update([key for key in selector.tags or () if key != SERVICE_TAG])
        self._label_keys.update(list(selector.labels or ()))

    def _unindex(self, key: Named, state: MeshServiceState) -> None:
        mesh, name = key
        selector = state.selector
        for index, index_key in (
            (self._by_service, (mesh, (selector.tags or {}).get(SERVICE_TAG, ""))),
            (self._by_dataplane, (mesh, selector.dataplane or "")),
        ):
            names = index.get(index_key)
            if names is not None:
                names.discard(name)
                if not names:
                    del index[index_key]
        unindexed = self._unindexed.get(mesh)
        if unindexed is not None:
            unindexed.discard(name)
            if not unindexed:
                del self._unindexed[mesh]
        self._tag_keys.subtract([key for key in selector.tags or () if key != SERVICE_TAG])
        self._label_keys.subtract(list(selector.labels or ()))
        self._tag_keys += Counter()  # drop the keys no selector asks for any more
        self._label_keys += Counter()


def _only(values: Mapping[str, str], keys: Counter[str]) -> Mapping[str, str]:
    return frozen_labels({key: value for key, value in values.items() if key in keys})
