"""Answers too big for UDP are cut at a record boundary with TC; TCP gets them whole."""

from __future__ import annotations

from ipaddress import ip_address

import dns.flags
import pytest

from dnsserver.codec import Response, encode_response
from dnsserver.records import Ns, Question, Record, name_from_text
from tests.dns.dnstesting import BIG_ENDPOINTS, OUTSIDER, parse, query, rdatas

BIG = "big.endpoints.mesh."


@pytest.mark.parametrize(("edns", "limit"), [(None, 512), (0, 1232)])
def test_udp_answer_is_truncated(handler, edns, limit):
    reply = handler.handle(query(BIG, edns=edns), OUTSIDER)
    assert reply is not None and len(reply) <= limit
    message = parse(reply)
    assert message.flags & dns.flags.TC
    assert message.flags & dns.flags.AA
    assert 0 < len(rdatas(message.answer)) < BIG_ENDPOINTS
    # What is left is a run of the full answer (which starts at a random rotation).
    full = rdatas(parse(handler.handle(query(BIG), OUTSIDER, tcp=True)).answer)
    kept = rdatas(message.answer)
    start = full.index(kept[0])
    assert kept == (full + full)[start : start + len(kept)]
    assert (message.edns == 0) == (edns == 0)


def test_tcp_answer_is_complete(handler):
    message = parse(handler.handle(query(BIG), OUTSIDER, tcp=True))
    assert not message.flags & dns.flags.TC
    assert len(rdatas(message.answer)) == BIG_ENDPOINTS


def test_small_answers_are_not_truncated(handler):
    message = parse(handler.handle(query("backend.endpoints.mesh."), OUTSIDER))
    assert not message.flags & dns.flags.TC


OWNER = name_from_text("web.mesh")
NS = Record(owner=name_from_text("mesh"), ttl=30, data=Ns(name_from_text("ns.mesh")))
RESPONSE = Response(
    id=1,
    opcode=0,
    rcode=0,
    rd=True,
    aa=True,
    question=Question(name=OWNER, qtype=1, qclass=1),
    answer=tuple(Record(OWNER, 30, ip_address(f"240.0.0.{i}")) for i in range(1, 4)),
    authority=(NS, NS),
    additional=tuple(
        Record(name_from_text("ns.mesh"), 30, ip_address(f"10.0.0.{i}")) for i in (1, 2)
    ),
)


@pytest.mark.parametrize("edns_payload", [None, 1232])
def test_records_are_dropped_from_the_end(edns_payload):
    """Shrinking the limit byte by byte drops additional, then authority, then answer."""
    response = Response(**{**_fields(RESPONSE), "edns_payload": edns_payload})
    full = encode_response(response, 65535)
    # The header, the question and the OPT record always fit: no limit is below 512.
    bare = encode_response(
        Response(**{**_fields(response), "answer": (), "authority": (), "additional": ()}), 65535
    )
    seen = []
    for limit in range(len(full), len(bare) - 1, -1):
        reply = encode_response(response, limit)
        assert len(reply) <= limit
        message = parse(reply)
        counts = (len(message.answer), len(message.authority), len(message.additional))
        # RFC 2181 9: additional records that do not fit are no reason for TC.
        assert bool(message.flags & dns.flags.TC) == (counts[:2] != (3, 2))
        assert (message.edns == 0) == (edns_payload is not None)
        if not seen or seen[-1] != counts:
            seen.append(counts)
    assert seen == [
        (3, 2, 2),
        (3, 2, 1),
        (3, 2, 0),
        (3, 1, 0),
        (3, 0, 0),
        (2, 0, 0),
        (1, 0, 0),
        (0, 0, 0),
    ]


def _fields(response: Response) -> dict:
    return {name: getattr(response, name) for name in Response.__slots__}


def test_tcp_reply_past_16k_with_many_names_parses():
    """Compression pointers reach 16383 bytes; names first written later stay uncompressed."""
    owners = [name_from_text(f"host{i}.mesh") for i in range(1000)]
    records = [Record(owner, 5, ip_address("10.0.0.1")) for owner in owners * 2]
    response = Response(**{**_fields(RESPONSE), "answer": tuple(records)})
    reply = encode_response(response, 65535)
    assert len(reply) > 0x3FFF
    message = parse(reply)
    assert not message.flags & dns.flags.TC
    assert [rrset.name.to_text() for rrset in message.answer] == [
        f"host{i}.mesh." for i in range(1000)
    ] * 2
