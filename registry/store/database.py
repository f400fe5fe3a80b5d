"""Engines and schema management: migrate, check the schema is current, compare to models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

import migrations
from registry.errors import DatabaseUnavailable, RegistryError, SchemaOutdated
from registry.models import metadata

SQLITE_BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_SECONDS = 10
# Write transactions ask for this option so SQLite takes its write lock at BEGIN: a
# deferred transaction that reads first and writes later fails at once with "database is
# locked" when another writer got in between, without waiting out the busy timeout.
WRITE_OPTION = "meshdns_write"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url`, set up for the registry (SQLite: FKs, WAL, busy timeout)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.drivername.endswith("asyncpg"):
        connect_args["timeout"] = CONNECT_TIMEOUT_SECONDS
    connect_args.update(kwargs.pop("connect_args", {}))
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, connect_args=connect_args, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # SQLAlchemy emits BEGIN itself (below); the driver's own handling skips it for
        # SELECT and SAVEPOINT, which breaks savepoints and repeatable reads.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# SQLSTATEs meaning "cannot reach or use the database now": connection exceptions (08),
# server shutting down or starting (57P0x), too many connections, no such database.
# Shut down (57P0x), too many connections, no such database, and 25006: a write reached a
# server that is read-only: a standby, or a primary being demoted, in a failover.
_UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "53300", "3D000", "25006"}


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database could not be reached (rather than a bad query)."""
    if isinstance(error, OSError):  # refused, DNS failure, timeouts (TimeoutError is one)
        return True
    if not isinstance(error, DBAPIError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
    if error.connection_invalidated or isinstance(error, InterfaceError):
        return True
    if isinstance(error, OperationalError):
        # SQLite reports a missing table as an OperationalError; that is a schema problem.
        message = str(error.orig).lower()
        return "no such table" not in message and "no such column" not in message
    return False


def is_schema_missing(error: BaseException) -> bool:
    """Whether `error` says a registry table is missing: the database was never migrated."""
    if not isinstance(error, DBAPIError):
        return False
    if getattr(error.orig, "sqlstate", None) == "42P01":  # undefined_table
        return True
    return "no such table" in str(error.orig).lower()


def schema_missing(url: str | URL) -> SchemaOutdated:
    return SchemaOutdated(
        f"database {describe_url(url)} has no registry schema (or an old one); "
        "run `meshdns migrate`"
    )


def describe_url(url: str | URL) -> str:
    """The URL without its password, to put in messages."""
    return make_url(url).render_as_string(hide_password=True)


def unavailable(url: str | URL, error: BaseException) -> DatabaseUnavailable:
    """The DatabaseUnavailable to raise for `error`, naming the database and the cause."""
    reason = str(getattr(error, "orig", None) or error) or type(error).__name__
    return DatabaseUnavailable(
        f"the registry database {describe_url(url)} is unavailable ({reason}); "
        "check that it is running and reachable, then try again"
    )


@contextmanager
def map_errors(url: str | URL) -> Iterator[None]:
    """Turn driver failures into the registry's errors: unreachable, or schema missing."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as error:
        if is_unavailable(error):
            raise unavailable(url, error) from error
        if is_schema_missing(error):
            raise schema_missing(url) from error
        raise


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction on a short-lived engine, failures mapped to our errors."""
    engine = create_engine(url)
    try:
        with map_errors(url):
            async with engine.begin() as connection:
                yield connection
    finally:
        await engine.dispose()


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration, built in code: no alembic.ini is needed or shipped."""
    config = Config()
    # __path__ rather than __file__: an editable install made before migrations/__init__.py
    # existed maps the package as a namespace package, which has no __file__.
    config.set_main_option("script_location", str(Path(next(iter(migrations.__path__)))))
    if url is not None:
        config.attributes["url"] = url
    return config


def newest_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads ({heads}); merge them")
    return heads[0]


async def _run_alembic(url: str, action: Callable[[Config], None]) -> None:
    config = alembic_config(url)
    async with connect(url) as connection:

        def run(sync_connection: Connection) -> None:
            config.attributes["connection"] = sync_connection
            action(config)

        await connection.run_sync(run)


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (the newest by default), in one transaction."""
    await _run_alembic(url, lambda config: command.upgrade(config, revision))


async def downgrade(url: str, revision: str) -> None:
    await _run_alembic(url, lambda config: command.downgrade(config, revision))


async def current_revision(url: str) -> str | None:
    async with connect(url) as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def check_schema_current(url: str) -> None:
    """Raise SchemaOutdated unless the database is at the newest migration."""
    current = await current_revision(url)
    newest = newest_revision()
    if current == newest:
        return
    scripts = ScriptDirectory.from_config(alembic_config())
    known = {script.revision for script in scripts.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaOutdated(
            f"database {describe_url(url)} is at schema revision {current}, which this meshdns "
            f"does not know (its newest is {newest}); upgrade meshdns"
        )
    where = f"at schema revision {current}" if current else "empty (no schema revision)"
    raise SchemaOutdated(
        f"database {describe_url(url)} is {where}, the newest is {newest}; run `meshdns migrate`"
    )


async def schema_differences(url: str) -> list[Any]:
    """Alembic's diff between the models and the database (empty when they agree)."""

    def compare(sync_connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            sync_connection, opts={"compare_type": True, "render_as_batch": True}
        )
        return list(compare_metadata(context, metadata))

    async with connect(url) as connection:
        return await connection.run_sync(compare)
