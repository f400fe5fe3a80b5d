"""What agents follow: each mesh's services and endpoints, whole or as changes since R.

The control plane's follower publishes every snapshot here as well as to its DNS
handler. An agent asks for the changes after the revision it holds (``after``); when
there are none yet it waits (a long poll) until there are or its wait runs out. The
answer is either the whole mesh (a first request, a revision from before this process's
history, or a mesh-wide change) or the services that changed since, with the names of
those that went away. Revisions are the registry's, shared by every replica on one
database, so an agent may resume from R against any of them.

Answers for one (mesh, after) at one revision are encoded once and shared: a change
wakes every waiting agent at the same R, and they all get the same bytes.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from typing import Any

from registry.snapshot import Delta, Endpoint, ServiceView, Snapshot

_WHOLE_MESH = ""  # a log entry for a change to the mesh itself (mTLS, created, deleted)


def encode_endpoint(endpoint: Endpoint) -> list[Any]:
    # A list, not an object: an endpoint is sent thousands of times in a large mesh.
    return [
        endpoint.dataplane,
        str(endpoint.address),
        endpoint.port,
        endpoint.ready,
        endpoint.online,
        endpoint.zone,
    ]


def encode_service(service: ServiceView) -> dict[str, Any]:
    return {
        "name": service.name,
        "vip": str(service.vip) if service.vip else None,
        "vip6": str(service.vip6) if service.vip6 else None,
        "endpoints": [encode_endpoint(endpoint) for endpoint in service.endpoints],
    }


class ServiceFeed:
    """Recent service changes by revision, for agents to follow incrementally."""

    def __init__(self, history: int = 100_000) -> None:
        self.snapshot = Snapshot.empty()
        self._history = history
        self._log: list[tuple[int, str, str]] = []  # (revision, mesh, service or _WHOLE_MESH)
        self._horizon = 0  # "changes since R" can be answered for R >= this
        self._changed = asyncio.Event()
        self._cache: dict[tuple[str, int], bytes] = {}
        self.answers = 0  # sent, for the bench

    def publish(self, snapshot: Snapshot, delta: Delta | None) -> None:
        """Take the follower's new snapshot (a None delta: everything may have changed)."""
        revision = snapshot.revision
        if delta is None:
            self._log.clear()
            self._horizon = revision
        else:
            self._log += [(revision, mesh, _WHOLE_MESH) for mesh in delta.meshes]
            self._log += [(revision, mesh, service) for mesh, service in delta.services]
            if len(self._log) > self._history:
                cut = len(self._log) - self._history // 2
                self._horizon = self._log[cut - 1][0]
                del self._log[:cut]
        self.snapshot = snapshot
        self._cache.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    async def since(self, mesh: str, after: int, wait: float) -> bytes:
        """The JSON answer for an agent of `mesh` holding revision `after`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            changed = self._changed
            body = self._answer(mesh, after, empty_ok=False)
            if body is not None:
                return body
            remaining = deadline - loop.time()
            if remaining <= 0:
                answer = self._answer(mesh, after, empty_ok=True)
                assert answer is not None
                return answer
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass

    def _answer(self, mesh: str, after: int, *, empty_ok: bool) -> bytes | None:
        revision = self.snapshot.revision
        key = (mesh, after)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        full = after > revision or after < self._horizon or after <= 0
        changed: set[str] = set()
        if not full:
            start = bisect.bisect_right(self._log, after, key=lambda entry: entry[0])
            for _, entry_mesh, service in self._log[start:]:
                if entry_mesh != mesh:
                    continue
                if service == _WHOLE_MESH:
                    full = True
                    break
                changed.add(service)
        if not full and not changed:
            if not empty_ok:
                return None
            # Not cached: a waiting agent must not find this and stop waiting.
            return json.dumps(
                {"revision": revision, "full": False, "services": [], "removed": []}
            ).encode()
        view = self.snapshot.meshes.get(mesh)
        services = view.services if view is not None else {}
        names = sorted(services) if full else sorted(changed)
        body = json.dumps(
            {
                "revision": revision,
                "full": full,
                "mesh": None if view is None else {"name": view.name, "mtls": view.mtls},
                "services": [encode_service(services[name]) for name in names if name in services],
                "removed": [] if full else [name for name in names if name not in services],
            },
            separators=(",", ":"),
        ).encode()
        self._cache[key] = body
        return body
