from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import Meshdns


@pytest.fixture
def start_meshdns(tmp_path) -> Iterator:
    """Start real `meshdns serve` processes; all are stopped at the end of the test."""
    started: list[Meshdns] = []

    def start(database_url: str, *extra: str) -> Meshdns:
        server = Meshdns(database_url=database_url, cwd=tmp_path, extra=extra).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
