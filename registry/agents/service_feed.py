"""What agents follow: what their dataplane sees of its mesh, whole or as changes since R.

The control plane's follower publishes every snapshot here as well as to its DNS
handler. An agent asks, for its dataplane, for the changes after the revision it holds
(``after``); when there are none it may see, it waits (a long poll) until there are or
its wait runs out. What a dataplane sees is what its control plane would answer it
(registry.snapshot's rule, for the :class:`Client` of that dataplane: its mesh, its
services, its reach): this zone's legacy services, other zones' it may reach, the
destinations it may reach, the hostname zones. The answer is either the whole of it (a
first request, a revision from before this process's history) or what it sees
differently since: the things that appear or changed, and the keys of those that went
(a change of who sees what, such as a permission, mTLS or its own reach, included).
Revisions are the registry's, shared by every replica on one database, so an agent may
resume from R against any of them (one that did not follow its dataplane at R answers
whole).

Answers are encoded once per (mesh, client then, client now, after) and shared: a change
wakes every waiting agent at the same R, and those that see alike get the same bytes
(a client's services count only where a permission names them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from registry.agents.history import Changes, History, Part
from registry.agents.records import encode_destination, encode_service
from registry.feed.states import DataplaneKey, DataplaneState
from registry.snapshot import Client, Delta, MeshView, Reach, Snapshot

# The dataplane of a key as the registry's view has it now (None: not known to it).
DataplaneLookup = Callable[[DataplaneKey], DataplaneState | None]

# A followed dataplane not asked for in this long is forgotten (its agent is gone or
# lost; asking again, it gets everything it sees). Longer than any long poll.
FORGET_AFTER = 900.0

_FULL = -1  # the ``after`` of an answer that is whole, in the answers' cache
# What is remembered of past changes (entries plus the endpoints they hold): an agent
# further behind gets a whole answer. A long run fills it and keeps it, so it is part of
# the memory a control plane holds for good (scripts/bench/soak watches it stay flat).
HISTORY = 100_000


def dataplane_client(mesh: str, state: DataplaneState | None) -> Client:
    """The client a dataplane is: its mesh, its services, its reach (none known: a
    client of the mesh that is no dataplane)."""
    if state is None:
        return Client(mesh)
    return Client(mesh, frozenset(state.services), Reach.union([state.reachable]))


@dataclass(slots=True)
class _Followed:
    """A dataplane some agent follows: its client, and what it was before each change."""

    state: DataplaneState | None
    client: Client
    since: int  # its client is known from this revision on
    asked: float  # when its agent last asked (monotonic seconds)
    history: list[tuple[int, Client]] = field(default_factory=list)  # (revision, before)

    def client_at(self, revision: int) -> Client:
        for changed, before in self.history:
            if changed > revision:
                return before
        return self.client


class ServiceFeed:
    """Recent changes by revision, for agents to follow incrementally what their
    dataplanes see; ``dataplanes`` looks a dataplane up in the registry's view (without
    it every dataplane is a client that is no dataplane); ``history`` bounds what is
    remembered of past changes (entries plus the endpoints they hold)."""

    def __init__(self, dataplanes: DataplaneLookup | None = None, history: int = HISTORY) -> None:
        self.snapshot = Snapshot.empty()
        self._dataplanes = dataplanes or (lambda key: None)
        self._history = History(history)
        self._followed: dict[DataplaneKey, _Followed] = {}
        self._changed = asyncio.Event()
        self._changes: dict[tuple[str, int], Changes | None] = {}
        self._answers: dict[tuple[str, Client, Client, int], bytes | None] = {}
        self.answers = 0  # sent, for the bench
        self._published = False
        self._closed = False

    def close(self) -> None:
        """Answer every waiting long poll now, and later ones without waiting: the server
        is stopping, and its API waits for the requests in flight before it closes."""
        self._closed = True
        self._changed.set()

    def publish(self, snapshot: Snapshot, delta: Delta | None) -> None:
        """Take the follower's new snapshot (a None delta: everything may have changed)."""
        revision = snapshot.revision
        if delta is None:
            self._history.restart(revision)
        else:
            self._history.record(self.snapshot, snapshot, delta)
        self.snapshot = snapshot
        self._published = True
        self._follow_clients(revision, changed=delta is not None)
        self._changes.clear()
        self._answers.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    async def reached(self, revision: int, timeout: float) -> bool:
        """Wait until the published snapshot is at ``revision`` or later (at most
        ``timeout`` seconds; not at all when nothing publishes here); whether it is."""
        if not self._published:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.snapshot.revision < revision:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closed:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def since(
        self, mesh: str, after: int, wait: float, dataplane: str | None = None
    ) -> bytes:
        """The JSON answer for the agent of ``dataplane`` of ``mesh`` holding revision
        ``after`` (no dataplane: what a client of the mesh that is none sees)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            changed = self._changed
            body = self._answer(mesh, dataplane, after)
            if body is not None:
                return body
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closed:
                return json.dumps(
                    {
                        "revision": self.snapshot.revision,
                        "full": False,
                        "services": [],
                        "removed": [],
                    }
                ).encode()
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass

    def _answer(self, mesh: str, dataplane: str | None, after: int) -> bytes | None:
        """The answer now, None when there is nothing the agent would see differently."""
        revision = self.snapshot.revision
        if dataplane is None:
            client_now = client_then = Client(mesh)
            since = 0
        else:
            followed = self._follow((mesh, dataplane))
            client_now, client_then, since = (
                followed.client,
                followed.client_at(after),
                followed.since,
            )
        changes: Changes | None = None
        if 0 < after <= revision and after >= since:
            key = (mesh, after)
            if key not in self._changes:
                self._changes[key] = self._history.changes(mesh, after)
            changes = self._changes[key]
        view = self.snapshot.meshes.get(mesh)
        if changes is None:
            client_now = client_then = _canonical(client_now, view)
            after = _FULL
        else:
            then = changes.rules_before if changes.rules_changed else view
            client_then = _canonical(client_then, then, view)
            client_now = _canonical(client_now, then, view)
            if not changes and client_then == client_now:
                return None
        cache_key = (mesh, client_then, client_now, after)
        if cache_key not in self._answers:
            answer = (
                self._whole(mesh, client_now)
                if changes is None
                else _difference(self.snapshot, mesh, changes, client_then, client_now)
            )
            self._answers[cache_key] = (
                None if answer is None else json.dumps(answer, separators=(",", ":")).encode()
            )
        return self._answers[cache_key]

    def _whole(self, mesh: str, client: Client) -> dict[str, Any]:
        view = self.snapshot.meshes.get(mesh)
        answer: dict[str, Any] = {"revision": self.snapshot.revision, "full": True}
        answer["mesh"] = _mesh(view)
        answer["hostnameZones"] = sorted(self.snapshot.hostname_zones)
        sight = view.sight(client) if view is not None else None
        for part in Part:
            seen: Mapping[str, Any] = {} if sight is None else getattr(sight, part.value)
            answer[part.value] = [_encode(part, seen[key]) for key in sorted(seen)]
            answer[_REMOVED[part]] = []
        return answer

    def _follow(self, key: DataplaneKey) -> _Followed:
        """The followed dataplane of ``key``, followed from now on if it was not."""
        followed = self._followed.get(key)
        if followed is None:
            state = self._dataplanes(key)
            followed = _Followed(
                state, dataplane_client(key[0], state), self.snapshot.revision, time.monotonic()
            )
            self._followed[key] = followed
        else:
            followed.asked = time.monotonic()
        return followed

    def _follow_clients(self, revision: int, *, changed: bool) -> None:
        """Note the followed dataplanes' clients at ``revision`` (``changed``: and what
        they were before, when they changed); forget those no agent asks for."""
        now = time.monotonic()
        horizon = self._history.horizon
        for key, followed in list(self._followed.items()):
            if now - followed.asked > FORGET_AFTER:
                del self._followed[key]
                continue
            if followed.history and followed.history[0][0] <= horizon:
                followed.history = [entry for entry in followed.history if entry[0] > horizon]
            state = self._dataplanes(key)
            if state is followed.state:
                continue
            client = dataplane_client(key[0], state)
            if client != followed.client and changed:
                followed.history.append((revision, followed.client))
            followed.state, followed.client = state, client


_REMOVED = {
    Part.SERVICES: "removed",
    Part.REMOTE: "removedRemote",
    Part.DESTINATIONS: "removedDestinations",
}


def _encode(part: Part, value: Any) -> dict[str, Any]:
    return encode_destination(value) if part is Part.DESTINATIONS else encode_service(value)


def _canonical(client: Client, *views: MeshView | None) -> Client:
    """``client`` with only the services that make a difference under ``views``' rules:
    those some permission names as a source (under mTLS; without it no permission counts),
    so that dataplanes of other services share one answer."""
    named: set[str] = set()
    for view in views:
        if view is not None and view.mtls:
            for rule in view.permissions:
                named.update(rule.sources)
    services = client.services.intersection(named)
    return client if services == client.services else replace(client, services=services)


def _mesh(view: MeshView | None) -> dict[str, Any] | None:
    """What the agent needs of the mesh itself: whether it exists, its mTLS, whether its
    legacy names answer."""
    if view is None:
        return None
    return {"name": view.name, "mtls": view.mtls, "legacyNames": view.legacy_names}


def _seen(part: Part, view: MeshView | None, client: Client, key: str, value: Any) -> Any:
    """``value`` (``key`` of ``part``) as ``client`` sees it under ``view``'s rules."""
    if view is None or value is None:
        return None
    if part is Part.SERVICES:
        return value if view.sees_service(client, key) else None
    if part is Part.REMOTE:
        return value if view.sees_remote(client, key) else None
    return view.seen_destination(client, value)


_ABSENT = object()


def _difference(
    snapshot: Snapshot, mesh: str, changes: Changes, client_then: Client, client_now: Client
) -> dict[str, Any] | None:
    """What a client holding what it saw before ``changes`` (as ``client_then``) sees
    differently now (as ``client_now``); None: nothing."""
    view = snapshot.meshes.get(mesh)
    then_rules = changes.rules_before if changes.rules_changed else view
    # Who sees what changed: anything may look different, not only what changed.
    everything = changes.rules_changed or client_then != client_now
    answer: dict[str, Any] = {"revision": snapshot.revision, "full": False}
    sent = False
    for part in Part:
        now = part.of(view)
        keys = set(changes.keys(part))
        if everything:
            keys.update(now)
        upserts: list[dict[str, Any]] = []
        removed: list[str] = []
        for key in sorted(keys):
            current = now.get(key)
            before = changes.before.get((part, key), _ABSENT)
            seen_then = _seen(
                part, then_rules, client_then, key, current if before is _ABSENT else before
            )
            seen_now = _seen(part, view, client_now, key, current)
            if seen_then is seen_now or seen_then == seen_now:
                continue
            if seen_now is None:
                removed.append(key)
            else:
                upserts.append(_encode(part, seen_now))
        answer[part.value] = upserts
        answer[_REMOVED[part]] = removed
        sent = sent or bool(upserts or removed)
    if changes.rules_changed and _mesh(then_rules) != _mesh(view):
        answer["mesh"] = _mesh(view)
        sent = True
    if changes.zones_before is not None and changes.zones_before != snapshot.hostname_zones:
        answer["hostnameZones"] = sorted(snapshot.hostname_zones)
        sent = True
    return answer if sent else None
