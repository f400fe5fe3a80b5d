"""Names that exist without records of the asked type: NOERROR, no answer, SOA in authority."""

from __future__ import annotations

import pytest

from tests.dns.dnstesting import ask, flags, owners, rcode, rdatas


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("mesh.", "A"),
        ("mesh.", "TXT"),
        ("web.mesh.", "TXT"),
        ("web.mesh.", "MX"),
        ("web.mesh.", "SOA"),
        ("web.mesh.", "NS"),
        ("web.mesh.", 65280),  # a private-use type
        ("backend.mesh.", "AAAA"),
        ("endpoints.mesh.", "A"),  # exists because <service>.endpoints.mesh do
        ("8080.mesh.", "A"),  # between an alias and the apex
        ("backend.endpoints.mesh.", "TXT"),
    ],
)
def test_nodata(handler, name, rdtype):
    reply = ask(handler, name, rdtype)
    assert rcode(reply) == "NOERROR"
    assert "AA" in flags(reply)
    assert reply.answer == reply.additional == []
    assert owners(reply.authority) == ["mesh."]
    assert rdatas(reply.authority)[0].startswith("ns.mesh. hostmaster.mesh. ")
    assert reply.authority[0].ttl == 30
