"""The handler's reply counts (what /metrics reads): every reply once, by question type,
rcode and transport, whether it came from the answer cache, the full path, a cache
entry evicted or a generation of tables replaced."""

from __future__ import annotations

from dnsserver import Handler
from dnsserver.counters import by_label
from tests.dns.dnstesting import OUTSIDER, query, standard_config, standard_snapshot


def counted(handler: Handler) -> dict[tuple[str, str, str], int]:
    replies, _, _ = handler.counts()
    return {(line.qtype, line.rcode, line.transport): line.count for line in by_label(replies)}


def ask_many(handler: Handler, times: int, name: str, rdtype: str, *, tcp: bool = False) -> None:
    for qid in range(times):
        assert handler.handle(query(name, rdtype, qid=qid), OUTSIDER, tcp=tcp) is not None


def test_replies_are_counted_by_type_rcode_and_transport_across_cache_generations():
    handler = Handler(standard_config(), standard_snapshot())
    ask_many(handler, 5, "web.mesh.", "A")
    ask_many(handler, 3, "nope.mesh.", "A")
    ask_many(handler, 2, "web.mesh.", "AAAA", tcp=True)
    handler.update(standard_snapshot())  # a new generation: the old cache's counts stay
    ask_many(handler, 4, "web.mesh.", "A")
    assert counted(handler) == {
        ("A", "NOERROR", "udp"): 9,
        ("A", "NXDOMAIN", "udp"): 3,
        ("AAAA", "NOERROR", "tcp"): 2,
    }
    _, hits, misses = handler.counts()
    # One full build per key and generation; the rest came from the cache.
    assert (hits, misses) == (10, 4)


def test_evicted_entries_keep_their_counts():
    handler = Handler(standard_config(), standard_snapshot(), cache_entries=1)
    ask_many(handler, 3, "web.mesh.", "A")
    ask_many(handler, 3, "nope.mesh.", "A")  # evicts web.mesh. A
    ask_many(handler, 2, "web.mesh.", "A")  # evicts nope.mesh. A
    assert counted(handler) == {("A", "NOERROR", "udp"): 5, ("A", "NXDOMAIN", "udp"): 3}


def test_unanswerable_messages_are_counted_apart():
    handler = Handler(standard_config(), standard_snapshot())
    assert handler.handle(b"\x00\x01", OUTSIDER) is None
    assert handler.counters.unanswered == {False: 1, True: 0}
    assert counted(handler) == {}
