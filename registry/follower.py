"""Keeps a reader's snapshot of the registry current.

For now a reader reloads the whole snapshot whenever the registry's revision moves:
it is woken at once by writes made in this process and polls for writes made by others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from registry.errors import DatabaseUnavailable
from registry.snapshot import Snapshot
from registry.store import Store

log = logging.getLogger("meshdns.registry")


class SnapshotFollower:
    """Loads the registry snapshot and hands every newer one to `publish`."""

    def __init__(
        self, store: Store, publish: Callable[[Snapshot], None], poll_interval: float = 1.0
    ) -> None:
        self.store = store
        self.publish = publish
        self.poll_interval = poll_interval
        self.revision: int | None = None
        self.connected = False
        self._wake = asyncio.Event()

    @property
    def loaded(self) -> bool:
        return self.revision is not None

    def wake(self) -> None:
        """Ask for a reload now, e.g. right after this process committed a write."""
        self._wake.set()

    async def refresh(self) -> None:
        """Publish a new snapshot when the registry moved past the one we hold."""
        revision = await self.store.revision()
        if revision != self.revision:
            snapshot = await self.store.load_snapshot()
            self.publish(snapshot)
            self.revision = snapshot.revision

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
                if not self.connected:
                    log.info("registry reachable; snapshot at revision %s", self.revision)
                self.connected = True
            except DatabaseUnavailable as error:
                if self.connected or self.revision is None:
                    log.warning("registry unreachable, answering from the last snapshot: %s", error)
                self.connected = False
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()
