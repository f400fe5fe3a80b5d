"""The error ladder: what is dropped, and what gets FORMERR, NOTIMP, REFUSED or SERVFAIL."""

from __future__ import annotations

import logging
import random
import struct

import pytest
from dnslib import DNSRecord

import dnsserver.handler
from tests.dns.dnstesting import OUTSIDER, query

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
QR, AA = 0x8000, 0x0400

WEB_A = query("web.mesh.", "A", qid=0x1234)
WEB_QUESTION = WEB_A[12:]  # a query without EDNS is its header and its question


def message(flags: int = 0x0100, counts=(1, 0, 0, 0), body: bytes = WEB_QUESTION) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, *counts) + body


def opt(payload: int = 1232) -> bytes:
    return b"\x00" + struct.pack("!HHIH", 41, payload, 0, 0)


def header(reply: bytes) -> tuple[int, int, int, tuple[int, ...]]:
    """id, flags without the rcode, rcode, and the four section counts."""
    qid, flags, *counts = struct.unpack("!HHHHHH", reply[:12])
    return qid, flags & ~0xF, flags & 0xF, tuple(counts)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x12\x34\x01", id="3 bytes"),
        pytest.param(WEB_A[:11], id="short header"),
        pytest.param(b"\xff" * 12, id="12 bytes of 0xff: QR set"),
        pytest.param(message(flags=QR | 0x0100), id="response"),
        pytest.param(message(flags=QR | (5 << 11)), id="UPDATE response"),
    ],
)
def test_dropped(handler, data):
    assert handler.handle(data, OUTSIDER) is None


@pytest.mark.parametrize(
    ("data", "rcode", "echoed"),
    [
        pytest.param(b"\x12\x34" + b"\x00" * 10, FORMERR, False, id="12 zero bytes"),
        pytest.param(b"\x12\x34\x01\x00\x00\x05" + b"\x00" * 6, FORMERR, False, id="no questions"),
        pytest.param(message(counts=(0, 0, 0, 0), body=b""), FORMERR, False, id="qdcount 0"),
        pytest.param(
            message(counts=(2, 0, 0, 0), body=WEB_QUESTION * 2), FORMERR, False, id="qdcount 2"
        ),
        pytest.param(message(body=WEB_QUESTION[:7]), FORMERR, False, id="question cut short"),
        pytest.param(message(body=WEB_QUESTION[:-1]), FORMERR, False, id="no class"),
        pytest.param(message(body=b"\xc0\x0c\x00\x01\x00\x01"), FORMERR, False, id="pointer loop"),
        pytest.param(
            message(body=b"\xc0\x20\x00\x01\x00\x01"), FORMERR, False, id="forward pointer"
        ),
        pytest.param(
            message(body=b"\x40" + b"a" * 64 + b"\x04mesh\x00\x00\x01\x00\x01"),
            FORMERR,
            False,
            id="64-byte label",
        ),
        pytest.param(
            message(body=b"\x03\xff\xfe\xfd\x04mesh\x00\x00\x01\x00\x01"),
            FORMERR,
            False,
            id="label not UTF-8",  # dnslib cannot read such labels
        ),
        pytest.param(message(body=WEB_QUESTION + b"junk"), FORMERR, True, id="trailing garbage"),
        pytest.param(message(counts=(1, 0, 0, 1)), FORMERR, True, id="arcount 1, no record"),
        pytest.param(
            message(counts=(1, 0, 0, 2), body=WEB_QUESTION + opt() + opt()),
            FORMERR,
            True,
            id="two OPT records",
        ),
        pytest.param(
            message(counts=(1, 1, 0, 0), body=WEB_QUESTION + opt()),
            FORMERR,
            True,
            id="OPT in the answer section",
        ),
        pytest.param(
            message(counts=(1, 0, 0, 1), body=WEB_QUESTION + b"\x03com" + opt()[1:]),
            FORMERR,
            True,
            id="OPT not owned by the root",
        ),
        pytest.param(message(flags=1 << 11), NOTIMP, True, id="IQUERY"),
        pytest.param(message(flags=2 << 11), NOTIMP, True, id="STATUS"),
        pytest.param(message(flags=4 << 11), NOTIMP, True, id="NOTIFY"),
        pytest.param(message(flags=5 << 11), NOTIMP, True, id="UPDATE"),
        pytest.param(message(flags=15 << 11), NOTIMP, True, id="opcode 15"),
        pytest.param(
            message(flags=5 << 11, counts=(1, 0, 1, 0), body=WEB_QUESTION + b"\x00\x00"),
            NOTIMP,
            True,
            id="UPDATE with a malformed update section",
        ),
        pytest.param(query("web.mesh.", rdclass="CH", qid=0x1234), REFUSED, True, id="class CH"),
        pytest.param(query("web.mesh.", rdclass="ANY", qid=0x1234), REFUSED, True, id="class ANY"),
        pytest.param(query("mesh.", "AXFR", qid=0x1234), REFUSED, True, id="AXFR"),
        pytest.param(query("mesh.", "IXFR", qid=0x1234), REFUSED, True, id="IXFR"),
        pytest.param(query("web.mesh.", "AXFR", qid=0x1234), REFUSED, True, id="AXFR below apex"),
        pytest.param(query("example.com.", qid=0x1234), REFUSED, True, id="outside the zone"),
        pytest.param(query("mesh.example.", qid=0x1234), REFUSED, True, id="mesh, not the apex"),
        pytest.param(query("xmesh.", qid=0x1234), REFUSED, True, id="suffix, not a label"),
        pytest.param(query(".", "NS", qid=0x1234), REFUSED, True, id="the root"),
    ],
)
def test_error_replies(handler, data, rcode, echoed):
    reply = handler.handle(data, OUTSIDER)
    assert reply is not None
    qid, flags, reply_rcode, counts = header(reply)
    assert (qid, reply_rcode) == (0x1234, rcode)
    assert flags & QR
    # Not an answer from our zone, so not authoritative.
    assert not flags & AA
    assert (flags >> 11) & 0xF == (data[2] >> 3) & 0xF  # the opcode is copied
    assert counts[1:3] == (0, 0)
    if echoed:
        assert counts[0] == 1
        # No records but the OPT (11 bytes): the rest of the reply is the question.
        question_end = len(reply) - (11 if counts[3] else 0)
        assert reply[12:question_end] == data[12:question_end]
    else:
        assert counts[0] == 0


def test_exception_while_answering_is_servfail_and_one_log_line(handler, monkeypatch, caplog):
    def broken_lookup(*args):
        raise RuntimeError("the zone table is broken")

    monkeypatch.setattr(dnsserver.handler, "lookup", broken_lookup)
    with caplog.at_level(logging.INFO, logger="meshdns.dns"):
        reply = handler.handle(WEB_A, OUTSIDER)
    assert reply is not None
    qid, flags, rcode, counts = header(reply)
    assert (qid, rcode, counts) == (0x1234, SERVFAIL, (1, 0, 0, 0))
    assert reply[12:] == WEB_QUESTION
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "web.mesh." in record.getMessage()
    assert "the zone table is broken" in record.getMessage()
    assert "\n" not in caplog.text.strip()


def test_every_prefix_of_a_query_is_dropped_or_answered(handler):
    data = query("backend.endpoints.mesh.", "A", edns=0)
    for end in range(len(data) + 1):
        reply = handler.handle(data[:end], OUTSIDER)
        assert (reply is None) == (end < 12)


def test_mutated_queries_never_reach_servfail(handler, caplog):
    """Flip bytes of real queries: every reply is dropped or well-formed, never a crash."""
    rng = random.Random(8482)
    seeds = [
        query("backend.endpoints.mesh.", "A", edns=0),
        query("Backend.Kuma-Demo.SVC.8080.mesh.", "AAAA"),
        query("mesh.", "NS", edns=0),
    ]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(2, len(data))] = rng.randrange(256)
        reply = handler.handle(bytes(data), OUTSIDER)
        if reply is not None:
            assert header(reply)[2] != SERVFAIL
            # dnslib, not dnspython: dnspython rejects UPDATE messages it would not send.
            assert DNSRecord.parse(reply).header.id == struct.unpack("!H", data[:2])[0]
    assert not caplog.records
