"""EDNS0 (RFC 6891): the OPT record in replies, BADVERS, and the UDP size limit."""

from __future__ import annotations

import dns.flags
import dns.rcode
import pytest

from tests.dns.dnstesting import OUTSIDER, ask, parse, query, rcode, standard_handler


@pytest.mark.parametrize(
    ("name", "rdtype", "rdclass"),
    [
        ("web.mesh.", "A", "IN"),
        ("nope.mesh.", "A", "IN"),  # NXDOMAIN
        ("example.com.", "A", "IN"),  # REFUSED
        ("web.mesh.", "A", "CH"),  # REFUSED
    ],
)
def test_reply_has_opt_when_the_query_has_one(handler, name, rdtype, rdclass):
    data = query(name, rdtype, rdclass=rdclass, edns=0, payload=4096)
    reply = parse(handler.handle(data, OUTSIDER))
    assert reply.edns == 0
    assert reply.payload == 1232
    assert not reply.ednsflags & dns.flags.DO
    assert len(reply.additional) == 0  # dnspython takes the OPT out of the section


def test_do_bit_is_not_echoed_we_do_not_sign(handler):
    data = query("web.mesh.", edns=0)
    data = data[:-6] + b"\x80\x00" + data[-4:]  # set DO in the OPT's TTL field
    reply = parse(handler.handle(data, OUTSIDER))
    assert reply.edns == 0 and not reply.ednsflags & dns.flags.DO


def test_no_opt_without_edns(handler):
    assert ask(handler, "web.mesh.").edns == -1


def test_our_payload_is_the_configured_one():
    handler = standard_handler(max_udp_payload=4000)
    assert ask(handler, "web.mesh.", edns=0).payload == 4000


@pytest.mark.parametrize("version", [1, 2, 255])
def test_unknown_edns_version_is_badvers(handler, version):
    reply = ask(handler, "web.mesh.", edns=version)
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0
    assert reply.answer == []
    assert reply.question[0].name.to_text() == "web.mesh."


@pytest.mark.parametrize(
    ("edns", "payload", "max_udp_payload", "limit"),
    [
        (None, 0, 1232, 512),
        (0, 100, 1232, 512),  # below 512 counts as 512
        (0, 512, 1232, 512),
        (0, 1000, 1232, 1000),
        (0, 1232, 1232, 1232),
        (0, 4096, 1232, 1232),  # capped at our maximum
        (0, 65535, 1232, 1232),
        (0, 4096, 4096, 4096),
        (0, 4096, 512, 512),
    ],
)
def test_udp_size_limit(edns, payload, max_udp_payload, limit):
    handler = standard_handler(max_udp_payload=max_udp_payload)
    data = query("big.endpoints.mesh.", edns=edns, payload=payload)
    reply = handler.handle(data, OUTSIDER)
    assert reply is not None
    # Cut at a record boundary: an A record here takes 16 bytes.
    assert limit - 16 < len(reply) <= limit
    message = parse(reply)
    assert message.flags & dns.flags.TC
    assert rcode(message) == "NOERROR"
