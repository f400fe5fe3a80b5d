"""What the DNS server counts: replies by question type, rcode and transport, and a
sample of how long the handler took. Plain integers, read at scrape time.

The hot path (a reply from the answer cache) pays for one integer increment on its
cache entry; the entry's count joins the others by key when it leaves the cache or
when someone reads the counts. Other replies are counted by a key taken from their
bytes as they are (the question type's two bytes, the header's fourth byte, the
transport), decoded only when read. Latencies are sampled: only
queries whose transaction id's low six bits are zero (one in 64, for random or
sequential ids) are timed, so the clock is read twice per 64 queries.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

from dnsserver.records import RecordType

# One in SAMPLE_MASK + 1 queries is timed: those whose id has these bits all zero.
SAMPLE_MASK = 63
# Seconds; the handler answers from its cache in microseconds, a full lookup in tens.
LATENCY_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.1,
)
# Keys of question types not in RecordType are kept as they are up to this many keys;
# past it they are counted as type "other", so a flood of odd types cannot grow the table.
_MAX_KEYS = 1024
_OTHER = b""

_RCODE_NAMES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}
_KNOWN_TYPES = frozenset(int(member) for member in RecordType)

# (question type as two wire bytes, the reply's header byte 3 (RA, Z, AD, CD, rcode), TCP)
Key = tuple[bytes, int, bool]


@dataclass(frozen=True, slots=True)
class Replies:
    """One line of the reply counts."""

    qtype: str
    rcode: str
    transport: str
    count: int


class DnsCounters:
    """Reply counts and sampled handler latencies of one DNS handler.

    Replies served from the answer cache are not counted here one by one: each cache
    entry counts its own (``served``), and its count is added here (:meth:`fold`) when
    the entry leaves the cache; a scrape adds the entries still in it.
    """

    def __init__(self) -> None:
        self.replies: dict[Key, int] = {}
        self.cache_hits = 0  # of the entries folded in
        # Queries the handler chose not to answer (responses, unreadable headers).
        self.unanswered = {False: 0, True: 0}
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def count(self, reply: bytes, tcp: bool, times: int = 1) -> None:
        """Count ``times`` replies like ``reply``. Its question's name ends at the first
        zero byte after the header in every reply we build (no compression there)."""
        end = reply.find(b"\x00", 12)
        self._add((reply[end + 1 : end + 3], reply[3], tcp), times)

    def fold(self, reply: bytes, tcp: bool, served: int) -> None:
        """Count what a cache entry served, as it leaves the cache."""
        if served:
            self.count(reply, tcp, served)
            self.cache_hits += served

    def _add(self, key: Key, times: int) -> None:
        qtype, flags, tcp = key
        if key not in self.replies and len(self.replies) >= _MAX_KEYS:
            if len(qtype) != 2 or int.from_bytes(qtype, "big") not in _KNOWN_TYPES:
                key = (_OTHER, flags, tcp)
        self.replies[key] = self.replies.get(key, 0) + times

    def observe(self, seconds: float) -> None:
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1


def by_label(replies: dict[Key, int]) -> Iterator[Replies]:
    """Reply counts, decoded and merged by (type, rcode, transport)."""
    merged: dict[tuple[str, str, str], int] = {}
    for (qtype, flags, tcp), count in replies.items():
        labels = (_type_name(qtype), _rcode_name(flags & 0x0F), "tcp" if tcp else "udp")
        merged[labels] = merged.get(labels, 0) + count
    for (qtype_name, rcode, transport), count in merged.items():
        yield Replies(qtype_name, rcode, transport, count)


def _type_name(qtype: bytes) -> str:
    if len(qtype) != 2:
        return "other"
    value = int.from_bytes(qtype, "big")
    return RecordType(value).name if value in _KNOWN_TYPES else "other"


def _rcode_name(rcode: int) -> str:
    return _RCODE_NAMES.get(rcode, f"RCODE{rcode}")
