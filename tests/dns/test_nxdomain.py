"""Names under the zone that do not exist: NXDOMAIN, with the SOA in authority."""

from __future__ import annotations

import pytest

from tests.dns.dnstesting import REVISION, ask, flags, owners, rcode, rdatas


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("nope.mesh.", "A"),
        ("nope.mesh.", "AAAA"),
        ("nope.mesh.", "SOA"),
        ("nope.mesh.", "ANY"),
        ("nope.mesh.", "TXT"),
        ("deep.under.nope.mesh.", "A"),
        ("www.web.mesh.", "A"),
        ("x.ns.mesh.", "A"),
        ("nope.endpoints.mesh.", "A"),
        ("only-other.mesh.", "A"),  # a service of another mesh
        ("_nope._tcp.mesh.", "SRV"),
        ("_backend._udp.mesh.", "SRV"),
        ("nope.addr.mesh.", "A"),
        ("0a000063.addr.mesh.", "A"),  # 10.0.0.99: no endpoint has it
    ],
)
def test_nxdomain(handler, name, rdtype):
    reply = ask(handler, name, rdtype)
    assert rcode(reply) == "NXDOMAIN"
    assert "AA" in flags(reply)
    assert reply.answer == reply.additional == []
    assert owners(reply.authority) == ["mesh."]
    assert rdatas(reply.authority) == [f"ns.mesh. hostmaster.mesh. {REVISION} 3600 600 86400 30"]
    # The negative-cache time: the SOA's own TTL, equal to its minimum (RFC 2308).
    assert reply.authority[0].ttl == 30
