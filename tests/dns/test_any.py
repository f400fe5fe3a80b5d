"""ANY queries get a minimal answer: one RRset of the name (RFC 8482)."""

from __future__ import annotations

import pytest

from tests.dns.dnstesting import ask, rcode, rdatas


@pytest.mark.parametrize(
    ("name", "rcode_text", "rdtype", "answer"),
    [
        ("mesh.", "NOERROR", "SOA", None),
        ("web.mesh.", "NOERROR", "A", ["240.0.0.2"]),
        ("backend.endpoints.mesh.", "NOERROR", "A", ["10.0.0.1", "10.0.0.3"]),
        ("ns.mesh.", "NOERROR", "A", ["127.0.0.53"]),
        # Names without records answer NODATA, names that do not exist NXDOMAIN.
        ("endpoints.mesh.", "NOERROR", None, []),
        ("novip.mesh.", "NOERROR", None, []),
        ("nope.mesh.", "NXDOMAIN", None, []),
    ],
)
@pytest.mark.parametrize("tcp", [False, True])
def test_any(handler, name, rcode_text, rdtype, answer, tcp):
    reply = ask(handler, name, "ANY", tcp=tcp)
    assert rcode(reply) == rcode_text
    assert len({rrset.rdtype for rrset in reply.answer}) <= 1
    if rdtype is not None:
        assert reply.answer[0].rdtype.name == rdtype
    if answer is not None:
        assert sorted(rdatas(reply.answer)) == answer
