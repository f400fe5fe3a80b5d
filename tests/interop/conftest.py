"""Fixtures of the interop tests: real DNS software we did not write, against meshdns."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dns.stubupstream import StubUpstream


@pytest.fixture(scope="session")
def upstream() -> Iterator[StubUpstream]:
    """A stub upstream resolver on loopback that answers example.com and friends."""
    with StubUpstream() as stub:
        yield stub
