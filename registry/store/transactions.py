"""The store's transactions: consistent reads, and writes whose changes enter the feed.

Every write transaction's first statement moves the registry's revision on, which takes
the registry_state row lock until commit: writers run one at a time and number their
changes in commit order (registry/feed/changes.py explains why the feed needs that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from registry.errors import RegistryError
from registry.feed.changes import PendingChange, record_changes
from registry.models import RegistryStateRow
from registry.store.database import map_errors, schema_missing
from registry.write_rules import STANDALONE, Origin, check_write


class Transaction:
    """An open write transaction and the changes it made, for the change feed.

    Every change is checked against the control plane's write rules as it is recorded
    (registry/write_rules.py): a write its mode does not take rolls the whole
    transaction back with a 405, whichever path made it.

    ``revision`` is the registry's revision once the transaction has committed: its last
    change's, or the unchanged revision when it recorded none. None until then.
    """

    def __init__(
        self,
        connection: AsyncConnection,
        now: datetime,
        mode: str = STANDALONE,
        origin: Origin = Origin.LOCAL,
    ) -> None:
        self.connection = connection
        self.now = now
        self.mode = mode
        self.origin = origin
        self.changes: list[PendingChange] = []
        self.revision: int | None = None

    def record(self, kind: str, mesh: str, name: str, *, deleted: bool = False) -> None:
        check_write(self.mode, kind, self.origin)
        self.changes.append(PendingChange(kind, mesh, name, deleted))


class Unchanged(RegistryError):
    """Raised inside a write transaction to roll it back (revision bump included), when
    there turned out to be nothing to write."""


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One consistent read: all its statements see the same committed state."""
    with map_errors(engine.url):
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # Read committed would give each statement its own snapshot.
                await connection.execution_options(isolation_level="REPEATABLE READ")
            async with connection.begin():
                yield connection


@asynccontextmanager
async def writing(
    writer: AsyncEngine, mode: str, origin: Origin = Origin.LOCAL
) -> AsyncIterator[Transaction]:
    """A write transaction on `writer` (an engine with WRITE_OPTION set); the changes it
    records enter the change feed at commit.

    `origin` says who writes: the sync worker's replication takes other resources than
    this control plane's own callers (registry/write_rules.py)."""
    with map_errors(writer.url):
        async with writer.begin() as connection:
            # First statement of every write: on Postgres it takes the registry_state
            # row lock until commit, so writers run one at a time and number their
            # changes in commit order. It also makes "is this the service's last
            # dataplane?" a question two writers cannot answer at once. SQLite's BEGIN
            # IMMEDIATE (WRITE_OPTION) serialises writers the same way.
            first_revision = await connection.scalar(
                update(RegistryStateRow)
                .where(RegistryStateRow.id == 1)
                .values(revision=RegistryStateRow.revision + 1)
                .returning(RegistryStateRow.revision)
            )
            if first_revision is None:
                raise schema_missing(writer.url)
            transaction = Transaction(connection, datetime.now(UTC), mode, origin)
            yield transaction
            revision = await record_changes(
                connection, first_revision, transaction.changes, transaction.now
            )
    transaction.revision = revision
