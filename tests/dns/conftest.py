"""Fixtures of the DNS tests."""

from __future__ import annotations

import pytest

from dnsserver import Handler
from tests.dns.dnstesting import standard_handler


@pytest.fixture
def handler() -> Handler:
    """A handler answering from the standard snapshot, with an NS address."""
    return standard_handler()
