"""The hot path: cached replies are the full path's, byte for byte; bounded; never stale."""

from __future__ import annotations

import random
from ipaddress import ip_address

import pytest

from dnsserver import Handler
from dnsserver.answers import REFRESH_EVERY, ROTATIONS
from tests.dns.dnstesting import (
    OTHER_DATAPLANE,
    OUTSIDER,
    mesh,
    parse,
    query,
    rcode,
    rdatas,
    service,
    snapshot,
    standard_config,
    standard_snapshot,
)

LOOPBACK = ip_address("127.0.0.1")

# (name, type, query options, tcp, client)
CASES = [
    ("web.mesh.", "A", {}, False, OUTSIDER),
    ("WeB.MeSh.", "A", {}, False, OUTSIDER),
    ("web.mesh.", "AAAA", {"edns": 0}, False, OUTSIDER),
    ("web.mesh.", "A", {"rd": False}, False, LOOPBACK),
    ("web.mesh.", "A", {}, False, LOOPBACK),  # RA: loopback may recurse
    ("web.mesh.", "A", {}, False, OTHER_DATAPLANE),  # the mesh "other"
    ("only-other.mesh.", "A", {}, False, OTHER_DATAPLANE),
    ("only-other.mesh.", "A", {}, False, OUTSIDER),  # NXDOMAIN in the default mesh
    ("nope.mesh.", "A", {}, False, OUTSIDER),
    ("NOPE.mesh.", "TXT", {"edns": 0, "payload": 4096}, False, OUTSIDER),
    ("endpoints.mesh.", "A", {}, False, OUTSIDER),  # empty non-terminal: NODATA
    ("mesh.", "SOA", {}, False, OUTSIDER),
    ("mesh.", "NS", {"edns": 0}, False, OUTSIDER),
    ("mesh.", "ANY", {}, False, OUTSIDER),
    ("backend.kuma-demo.svc.8080.mesh.", "A", {}, False, OUTSIDER),
    ("backend.endpoints.mesh.", "A", {}, False, OUTSIDER),
    ("_backend._tcp.mesh.", "SRV", {"edns": 0}, False, OUTSIDER),
    ("big.endpoints.mesh.", "A", {}, False, OUTSIDER),  # truncated at 512
    ("big.endpoints.mesh.", "A", {"edns": 0, "payload": 1232}, False, OUTSIDER),
    ("big.endpoints.mesh.", "A", {"edns": 0, "payload": 700}, False, OUTSIDER),
    ("big.endpoints.mesh.", "A", {}, True, OUTSIDER),  # whole over TCP
    ("_big._tcp.mesh.", "SRV", {"edns": 0}, False, OUTSIDER),
    ("f0000002.addr.mesh.", "A", {}, False, OUTSIDER),
    ("2.0.0.240.in-addr.arpa.", "PTR", {}, False, OUTSIDER),
]


def reference(data: bytes, client, tcp: bool) -> bytes:
    """The full path's reply: a handler without a cache."""
    handler = Handler(standard_config(), standard_snapshot(), cache_entries=0)
    reply = handler.handle(data, client, tcp=tcp)
    assert isinstance(reply, bytes)
    return reply


def same_apart_from_rotation(reply: bytes, expected: bytes, whole: bytes) -> None:
    """Equal bytes; or, for a rotated set, equal header (counts, flags), length and
    question, with records out of the same whole set (``whole``: the reply over TCP)."""
    if reply == expected:
        return
    assert len(reply) == len(expected)
    assert reply[:12] == expected[:12]
    got, want, everything = parse(reply), parse(expected), parse(whole)
    assert got.question == want.question
    for section in ("answer", "authority", "additional"):
        records = rdatas(getattr(got, section))
        assert len(set(records)) == len(records)
        assert set(records) <= set(rdatas(getattr(everything, section)))


@pytest.mark.parametrize(("name", "rdtype", "options", "tcp", "client"), CASES)
def test_cached_replies_are_the_full_paths(name, rdtype, options, tcp, client):
    handler = Handler(standard_config(), standard_snapshot())
    for qid in (1, 2, 3, 0xBEEF, 7, 8):  # a miss, then hits (and rotations) with other ids
        data = query(name, rdtype, qid=qid, **options)
        reply = handler.handle(data, client, tcp=tcp)
        assert isinstance(reply, bytes)
        whole = reference(data, client, True)
        same_apart_from_rotation(reply, reference(data, client, tcp), whole)
    assert len(handler.cache) == 1


def test_transport_entry_point_answers_like_handle():
    handler = Handler(standard_config(), standard_snapshot())
    data = query("web.mesh.", qid=77)
    assert handler.handle_peer(data, "127.0.0.1") == reference(data, LOOPBACK, False)
    assert handler.handle_peer(data, "::ffff:127.0.0.1") == reference(data, LOOPBACK, False)
    assert handler.handle_peer(data, "192.0.2.1") == reference(data, OUTSIDER, False)


@pytest.mark.parametrize(
    "data",
    [
        query("example.com."),  # outside the zone: REFUSED for this client
        query("web.mesh.", rdclass="CH"),
        query("web.mesh.", edns=1),  # BADVERS
        query("mesh.", "AXFR"),
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web",  # FORMERR
    ],
)
def test_errors_and_refusals_are_not_cached(data):
    handler = Handler(standard_config(), standard_snapshot())
    for _ in range(3):
        assert handler.handle(data, OUTSIDER) == reference(data, OUTSIDER, False)
    assert len(handler.cache) == 0


def test_random_name_flood_keeps_the_cache_within_its_bound():
    """Acceptance 4: NXDOMAIN for random names turns entries over, never grows past the bound."""
    bound = 64
    handler = Handler(standard_config(), standard_snapshot(), cache_entries=bound)
    rng = random.Random(5)
    for i in range(2_000):
        label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
        reply = parse(handler.handle(query(f"{label}.mesh.", qid=i), OUTSIDER))
        assert rcode(reply) == "NXDOMAIN"
        assert len(handler.cache) <= bound
    assert len(handler.cache) == bound
    # Names still asked for keep being answered right after the flood.
    assert rdatas(parse(handler.handle(query("web.mesh."), OUTSIDER)).answer) == ["240.0.0.2"]


def test_byte_bound_holds_for_large_replies():
    handler = Handler(
        standard_config(), standard_snapshot(), cache_entries=1_000, cache_bytes=20_000
    )
    for qid in range(60):
        handler.handle(query("big.endpoints.mesh.", qid=qid, edns=0, payload=600 + qid), OUTSIDER)
        handler.handle(query("big.endpoints.mesh.", qid=qid), OUTSIDER, tcp=True)
        assert handler.cache.size_bytes <= 20_000
    assert 0 < len(handler.cache) < 60


def test_no_answer_survives_an_update():
    handler = Handler(standard_config(), standard_snapshot())
    data = query("web.mesh.")
    assert rdatas(parse(handler.handle(data, OUTSIDER)).answer) == ["240.0.0.2"]
    assert rdatas(parse(handler.handle(data, OUTSIDER)).answer) == ["240.0.0.2"]
    moved = snapshot(mesh("default", service("web", "240.0.0.99")), revision=43)
    handler.update(moved)
    assert rdatas(parse(handler.handle(data, OUTSIDER)).answer) == ["240.0.0.99"]
    gone = snapshot(mesh("default"), revision=44)
    handler.update(gone)
    assert rcode(parse(handler.handle(data, OUTSIDER))) == "NXDOMAIN"


def test_rotated_answers_keep_rotating_from_the_cache():
    handler = Handler(standard_config(), standard_snapshot())
    data = query("big.endpoints.mesh.")
    first_record = len(data) + 12  # the first answer: owner pointer, type, class, TTL, length
    firsts = set()
    for qid in range(5 * REFRESH_EVERY):
        reply = handler.handle(qid.to_bytes(2, "big") + data[2:], OUTSIDER)
        assert isinstance(reply, bytes)
        firsts.add(reply[first_record : first_record + 4])
    # The kept rotations are refreshed now and then: more records than kept come first.
    assert len(firsts) > ROTATIONS
