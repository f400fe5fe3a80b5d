"""dig and kdig on answers too large for UDP: truncated with TC over UDP, whole over TCP.

(Every row of the name table, over UDP and TCP, is in test_name_table.py.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dnsserver import DnsServer
from tests.dns.dnstesting import BIG_ENDPOINTS, standard_handler
from tests.interop.interophelpers import CLIENT_OPTIONS, ServerThread, run

pytestmark = pytest.mark.interop

CLIENTS = list(CLIENT_OPTIONS)


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with ServerThread(standard_handler()) as server:
        yield server


@pytest.mark.parametrize("client", CLIENTS)
def test_large_answer_truncated_over_udp(server, client):
    reply = run(client, server, "big.endpoints.mesh", "A", "+notcp", "+ignore")
    assert "tc" in reply.flags
    assert 0 < len(reply.sections["ANSWER"]) < BIG_ENDPOINTS


@pytest.mark.parametrize("client", CLIENTS)
def test_large_answer_complete_over_tcp(server, client):
    reply = run(client, server, "big.endpoints.mesh", "A", "+tcp")
    assert "tc" not in reply.flags
    assert len(reply.sections["ANSWER"]) == BIG_ENDPOINTS
