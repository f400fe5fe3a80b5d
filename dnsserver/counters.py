"""What the DNS server counts: replies by question type, rcode and transport, and a
sample of how long the handler took. Plain integers, read at scrape time.

Replies are counted by a key taken from their bytes as they are (the question type's
two bytes, the header's fourth byte, the transport), decoded only when read. The hot
path (a reply from the answer cache) pays for one integer increment: the cache entry
holds the :class:`Cell` of its reply's key, found when the reply was built.

Latencies are sampled: only queries whose transaction id's low six bits are zero (one
in 64, for random or sequential ids) are timed, so the clock is read twice per 64
queries.
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


class Cell:
    """One count, shared by the cache entries whose replies have the same key."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class DnsCounters:
    """Reply counts and sampled handler latencies of one DNS handler.

    A reply built in full is counted by :meth:`count`, which hands back the cell of its
    key; an answer cache entry keeps that cell and counts each reply served from it
    with one increment, so nothing has to be added up when entries leave the cache.
    """

    def __init__(self) -> None:
        self.cells: dict[Key, Cell] = {}
        self.built = 0  # replies counted by count(): all but the cache's
        # Queries the handler chose not to answer (responses, unreadable headers).
        self.unanswered = {False: 0, True: 0}
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def count(self, reply: bytes, tcp: bool) -> Cell:
        """Count a reply built in full; the cell that counts its kind. The question's
        name ends at the first zero byte after the header in every reply we build (no
        compression there)."""
        end = reply.find(b"\x00", 12)
        key = (reply[end + 1 : end + 3], reply[3], tcp)
        cell = self.cells.get(key)
        if cell is None:
            cell = self._new_cell(key)
        cell.count += 1
        self.built += 1
        return cell

    def _new_cell(self, key: Key) -> Cell:
        qtype, flags, tcp = key
        if len(self.cells) >= _MAX_KEYS and (
            len(qtype) != 2 or int.from_bytes(qtype, "big") not in _KNOWN_TYPES
        ):
            key = (_OTHER, flags, tcp)
        return self.cells.setdefault(key, Cell())

    def replies(self) -> dict[Key, int]:
        """Every reply so far, by key."""
        return {key: cell.count for key, cell in list(self.cells.items())}

    def cache_hits(self) -> int:
        """Replies served from the answer cache so far."""
        return sum(cell.count for cell in list(self.cells.values())) - self.built

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
