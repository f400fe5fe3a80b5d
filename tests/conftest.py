"""Shared fixtures: fresh, migrated registry databases on SQLite and Postgres.

- ``database_url``: the async URL of a fresh database migrated to the newest revision,
  once per backend (test ids ``[sqlite]`` and ``[postgres]``; the Postgres one carries
  the ``postgres`` marker, so ``-m "not postgres"`` runs SQLite only).
- ``store``: a ``Store`` over ``database_url`` with `serve`'s default VIP settings.
- ``make_store``: ``make_store(vip_settings(...))`` gives another ``Store`` (its own
  engine) over the same database, e.g. to show state surviving a restart.
- ``postgres_database_url``: like ``database_url``, Postgres only (mark the test
  ``@pytest.mark.postgres``).
- ``empty_database_url`` (both backends) / ``empty_postgres_url``: a database with no
  schema at all, e.g. to show `serve` refusing a database behind the migrations.

The schema is built by running the migrations, never ``create_all``: once per session
into a template (a SQLite file copied per test; a Postgres database each test's
database is created from with ``CREATE DATABASE ... TEMPLATE``).

Postgres comes from ``MESHDNS_TEST_POSTGRES_URL`` (a libpq URL of a role that may
create databases; default ``postgresql://postgres@127.0.0.1:5432/postgres``). When it
cannot be reached the Postgres tests are skipped with the reason, except under
``CI=true``, where they fail.

The suite runs in pytest-xdist workers (``-n``, set in pyproject.toml): each worker has
databases of its own (their names carry the worker's id), its own tmp dirs (xdist's),
and its own slice of ports (``tests.helpers.free_port``). The long tests start first and
the tests marked ``serial`` run alone (tests/scheduling.py, a plugin of this file).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from registry.store import Store, VipSettings
from registry.store.database import create_engine, upgrade
from tests.helpers import Meshdns
from tests.serve_settings import vip_settings

pytest_plugins = ["tests.scheduling"]  # long tests first, serial ones alone

T = TypeVar("T")

POSTGRES_ADMIN_URL = os.environ.get(
    "MESHDNS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def postgres_url(database: str, driver: str = "postgresql+asyncpg") -> str:
    """The URL of `database` on the test server, for SQLAlchemy (async) by default."""
    url = make_url(POSTGRES_ADMIN_URL).set(drivername=driver, database=database)
    return url.render_as_string(hide_password=False)


class PostgresAdmin:
    """Creates and drops the test databases, on its own event loop in its own thread.

    Its own loop, so that sync and async tests alike can use it without touching the
    loop pytest-asyncio runs the test on. Creating a database costs a fraction of a
    second, so the next one is made in the background while a test runs, and dropping
    happens in the background too.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # Unique among the workers of a run, and among runs at once on one server.
        owner = f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
        self.names = (f"meshdns_test_{owner}_{n}" for n in itertools.count())
        self.template = f"meshdns_template_{owner}"
        self.template_ready = False
        self.error: str | None = None
        self.drops: list[Future[None]] = []
        self.spare: Future[str] | None = None  # the next migrated database, being made
        self.creator: Any = None
        self.dropper: Any = None
        try:
            self.creator, self.dropper = self.run(self._connect())
        except (OSError, asyncpg.PostgresError) as error:
            self.error = f"Postgres at {_safe(POSTGRES_ADMIN_URL)} is unreachable: {error}"

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _connect(self) -> tuple[Any, Any]:
        # One connection runs one statement at a time.
        self.create_lock = asyncio.Lock()
        self.drop_lock = asyncio.Lock()
        dsn = make_url(POSTGRES_ADMIN_URL).render_as_string(hide_password=False)
        return (
            await asyncpg.connect(dsn, timeout=5),
            await asyncpg.connect(dsn, timeout=5),
        )

    def require(self) -> None:
        """Skip the test when Postgres is unreachable (fail under CI=true)."""
        if self.error is None:
            return
        if IN_CI:
            pytest.fail(f"{self.error} (CI=true: the Postgres tests must run)")
        pytest.skip(f"{self.error}; set MESHDNS_TEST_POSTGRES_URL")

    def create_migrated(self) -> str:
        """A database made from the migrated template; the next one is started."""
        if not self.template_ready:
            self.run(self._build_template())
            self.template_ready = True
        made = self.spare or self._start_from_template()
        self.spare = self._start_from_template()
        return made.result()

    def _start_from_template(self) -> Future[str]:
        name = next(self.names)
        statement = f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'
        return asyncio.run_coroutine_threadsafe(self._create(name, statement), self.loop)

    async def _create(self, name: str, statement: str) -> str:
        async with self.create_lock:
            await self.creator.execute(statement)
        return name

    async def _build_template(self) -> None:
        async with self.create_lock:
            await self.creator.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            await self.creator.execute(f'CREATE DATABASE "{self.template}"')
        await upgrade(postgres_url(self.template))

    def create_empty(self) -> str:
        name = next(self.names)
        return self.run(self._create(name, f'CREATE DATABASE "{name}"'))

    def drop(self, name: str) -> None:
        """Drop `name` in the background; FORCE ends connections a test left open."""
        statement = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        self.drops.append(asyncio.run_coroutine_threadsafe(self._drop(statement), self.loop))

    async def _drop(self, statement: str) -> None:
        async with self.drop_lock:  # one connection runs one statement at a time
            await self.dropper.execute(statement)

    def close(self) -> None:
        if self.spare is not None:
            self.drop(self.spare.result())
        for drop in self.drops:
            drop.result()
        if self.creator is not None:
            if self.template_ready:
                self.run(
                    self.creator.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
                )
            self.run(self.creator.close())
            self.run(self.dropper.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _run_in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end on a fresh loop in another thread (errors re-raised)."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[PostgresAdmin]:
    admin = PostgresAdmin()
    yield admin
    admin.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision, for each test to copy."""
    path = tmp_path_factory.mktemp("template") / "registry.db"
    _run_in_thread(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The async URL of a fresh database at the newest migration (SQLite and Postgres)."""
    if request.param == "sqlite":
        path = tmp_path / "registry.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    admin: PostgresAdmin = request.getfixturevalue("postgres_admin")
    admin.require()
    name = admin.create_migrated()
    yield postgres_url(name)
    admin.drop(name)


@pytest.fixture
def postgres_database_url(postgres_admin: PostgresAdmin) -> Iterator[str]:
    """Like ``database_url``, Postgres only: for tests of Postgres behaviour (races)."""
    postgres_admin.require()
    name = postgres_admin.create_migrated()
    yield postgres_url(name)
    postgres_admin.drop(name)


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The async URL of an empty database, no migration applied (SQLite and Postgres)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    yield from _empty_postgres(request.getfixturevalue("postgres_admin"))


@pytest.fixture
def empty_postgres_url(postgres_admin: PostgresAdmin) -> Iterator[str]:
    """The async URL of an empty Postgres database (no schema), dropped afterwards."""
    yield from _empty_postgres(postgres_admin)


def _empty_postgres(admin: PostgresAdmin) -> Iterator[str]:
    admin.require()
    name = admin.create_empty()
    yield postgres_url(name)
    admin.drop(name)


@pytest.fixture
async def make_store(database_url: str) -> AsyncIterator[Callable[..., Store]]:
    """Make Stores over the test database, each on its own engine (disposed afterwards)."""
    engines = []

    def make(vips: VipSettings | None = None) -> Store:
        engine = create_engine(database_url)
        engines.append(engine)
        return Store(engine, vips or vip_settings())

    yield make
    for engine in engines:
        await engine.dispose()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    """A Store with default VIP settings over a fresh migrated database."""
    return make_store()


@pytest.fixture
def start_meshdns(tmp_path: Path) -> Iterator[Callable[..., Meshdns]]:
    """Start real `meshdns serve` processes; all are stopped at the end of the test."""
    started: list[Meshdns] = []

    def start(database_url: str, *extra: str) -> Meshdns:
        server = Meshdns(database_url=database_url, cwd=tmp_path, extra=extra).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
