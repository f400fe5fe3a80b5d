"""<hex>.addr.mesh: the address it encodes, for addresses the registry knows (as Consul's
<hex>.addr.<dc>.consul)."""

from __future__ import annotations

import pytest

from tests.dns.dnstesting import ask, rcode, rdatas


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode_text", "answer"),
    [
        ("0a000001.addr.mesh.", "A", "NOERROR", ["10.0.0.1"]),
        ("0A000001.ADDR.mesh.", "A", "NOERROR", ["10.0.0.1"]),
        # A known address of an endpoint that is not ready is still an address we know.
        ("0a000002.addr.mesh.", "A", "NOERROR", ["10.0.0.2"]),
        ("fd000000000000000000000000010001.addr.mesh.", "AAAA", "NOERROR", ["fd00::1:1"]),
        # VIPs are addresses the registry knows too.
        ("f0000002.addr.mesh.", "A", "NOERROR", ["240.0.0.2"]),
        ("fd000000000000000000000000000002.addr.mesh.", "AAAA", "NOERROR", ["fd00::2"]),
        # The other family at an address name: NODATA.
        ("0a000001.addr.mesh.", "AAAA", "NOERROR", []),
        ("addr.mesh.", "A", "NOERROR", []),  # an empty non-terminal
        # Addresses nobody registered, or not hex at all: NXDOMAIN.
        ("0a0000ff.addr.mesh.", "A", "NXDOMAIN", []),
        ("10.0.0.1.addr.mesh.", "A", "NXDOMAIN", []),
        ("zz000001.addr.mesh.", "A", "NXDOMAIN", []),
        # Addresses of another mesh's services are not in this one.
        ("f0010002.addr.mesh.", "A", "NXDOMAIN", []),
    ],
)
def test_addr(handler, name, rdtype, rcode_text, answer):
    reply = ask(handler, name, rdtype)
    assert rcode(reply) == rcode_text
    assert rdatas(reply.answer) == answer
    if answer:
        assert reply.answer[0].ttl == 5
