"""How the API writes: each write is one store transaction, and once it has committed,
the registry's revision after it is reported (`serve` answers a write only once its own
DNS has that revision)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from registry.store import Store
from registry.store.transactions import Transaction

# Awaited with the registry's revision after each committed write.
OnChange = Callable[[int], Awaitable[None]]


class Writes:
    """The API's write transactions over `store`, reported to `on_change` once committed."""

    def __init__(self, store: Store, on_change: OnChange | None = None) -> None:
        self.store = store
        self._on_change = on_change

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One write transaction; an error raised in it rolls it back and reports nothing."""
        async with self.store.writing() as transaction:
            yield transaction
        if self._on_change is not None:
            assert transaction.revision is not None  # set at commit
            await self._on_change(transaction.revision)
