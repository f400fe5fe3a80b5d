"""Fixtures for the live-registry tests: a private Postgres to take down.

- ``private_postgres``: a :class:`~tests.pgcluster.PostgresCluster` of this test's own,
  running, whose ``postgres`` database is migrated by ``meshdns migrate``; ``.url`` is
  its SQLAlchemy URL. The test may ``stop()`` and ``start()`` it. Skipped with the
  reason when this machine cannot run one (no initdb/pg_ctl, or root without runuser or
  a ``postgres`` user), except under ``CI=true``, where that fails.

``start_meshdns`` (real ``meshdns serve`` processes) comes from tests/conftest.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import IN_CI, MESHDNS, ROOT
from tests.pgcluster import ClusterUnavailable, PostgresCluster


class PrivatePostgres:
    """A running private cluster and the URL of its migrated database."""

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster
        self.url = cluster.url()

    def stop(self, mode: str = "fast") -> None:
        self.cluster.stop(mode)

    def start(self) -> None:
        self.cluster.start()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = new_cluster()
    try:
        cluster.start()
        migrate(cluster)
        yield PrivatePostgres(cluster)
    finally:
        cluster.cleanup()


def new_cluster() -> PostgresCluster:
    """A private cluster; skipped (failed under CI) where this machine cannot run one."""
    try:
        return PostgresCluster()
    except ClusterUnavailable as error:
        if IN_CI:
            pytest.fail(f"{error} (CI=true: the live Postgres tests must run)")
        pytest.skip(str(error))


def migrate(cluster: PostgresCluster) -> None:
    """`meshdns migrate` on the cluster's `postgres` database."""
    migrated = subprocess.run(
        [MESHDNS, "migrate", "--database-url", cluster.url()],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
