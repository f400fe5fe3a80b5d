"""Response rate limiting (RRL): a token bucket per client network, for UDP replies.

A UDP query's source address is not proven: a flood can come from one client or be
spoofed to aim our replies at a victim. So each client network (its address cut to
a prefix, /32 and /64 by default) may have ``rate`` replies a second, with a burst of
one second's worth; past it, every ``slip``-th query gets an empty reply with TC set
(see :func:`slip_reply`), which tells a real client to ask again over TCP, and the
others get nothing. TCP is never limited here: a client that completed a handshake
owns its address, and that is what the slip relies on.

The buckets are kept as one number per network, the time at which its bucket would
be full again (the generic cell rate algorithm, equivalent to a token bucket): a
query is allowed when that time is at most one second ahead, and moves it on by
``1 / rate``. A network whose time has passed has a full bucket, the same as having
none, so it can be forgotten without changing any decision. The table holds at most
:data:`MAX_NETWORKS` networks; when it is full, every full bucket is dropped at once,
and if that frees too little (nearly that many networks whose buckets have not refilled
yet), the longest-known ones go too and start afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from itertools import islice

from dnsserver.handler import client_address

# The most client networks with a bucket: about 15 MB with the address memo (25 MB for
# a moment while a sweep copies the table). A flood of random spoofed sources gives each
# its burst anyway; the bound is on memory.
MAX_NETWORKS = 100_000
# Clients whose network key is remembered (then started over), as the handler does.
_MAX_KEYS = 65_536
# When a sweep of full buckets frees less than this share of the table, the longest-
# known networks are dropped to free it.
_EVICT_SHARE = 10

_IPV6_KEYS = 1 << 128

_HEADER_SIZE = 12
_QR = 0x80
_OPCODE_RD = 0x79  # opcode bits and RD, kept from the query
_TC = 0x02


class RateLimiter:
    """Decides, per UDP query, whether its client network is within its rate."""

    __slots__ = (
        "_clock",
        "_full_at",
        "_interval",
        "_ipv4_prefix",
        "_ipv6_prefix",
        "_keys",
        "_max_networks",
        "_slip",
        "_tolerance",
        "evicted",
        "limited",
        "slipped",
    )

    def __init__(
        self,
        rate: int,
        *,
        slip: int = 2,
        ipv4_prefix: int = 32,
        ipv6_prefix: int = 64,
        max_networks: int = MAX_NETWORKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 1:
            raise ValueError(f"rate={rate}: a rate limiter needs at least 1 reply a second")
        self._interval = 1.0 / rate
        # Allowed while the bucket's full-again time is at most this far ahead: a
        # burst of `rate` replies at one instant, one second's worth. (Half an interval
        # more than (rate - 1) intervals, so that rounding never costs a reply.)
        self._tolerance = 1.0 - self._interval / 2
        self._slip = slip
        self._ipv4_prefix = ipv4_prefix
        self._ipv6_prefix = ipv6_prefix
        self._max_networks = max_networks
        self._clock = clock
        self._full_at: dict[object, float] = {}
        self._keys: dict[str, object] = {}
        self.limited = 0  # queries over the limit
        self.slipped = 0  # of them, answered empty with TC
        self.evicted = 0  # networks forgotten before their bucket was full

    @property
    def networks(self) -> int:
        """Client networks with a bucket now."""
        return len(self._full_at)

    def allow(self, host: str) -> bool:
        """Whether a reply to ``host`` (the address text a socket gave) is within the rate.

        The hot path: one memo lookup, one clock read and one table update.
        """
        key = self._keys.get(host)
        if key is None:
            key = self._remember(host)
        now = self._clock()
        table = self._full_at
        full_at = table.get(key)
        if full_at is None:
            if len(table) >= self._max_networks:
                self._make_room(now)
            table[key] = now + self._interval
            return True
        if full_at < now:
            full_at = now
        elif full_at - now > self._tolerance:
            self.limited += 1
            return False
        table[key] = full_at + self._interval
        return True

    def limited_reply(self, query: bytes) -> bytes | None:
        """What a query over the limit gets: every ``slip``-th an empty reply with TC set,
        the others (and anything that is no readable query) nothing."""
        slip = self._slip
        if not slip or self.limited % slip:
            return None
        reply = slip_reply(query)
        if reply is not None:
            self.slipped += 1
        return reply

    def network(self, host: str) -> IPv4Network | IPv6Network:
        """The client network ``host`` counts in: its address cut to the prefix."""
        address = client_address(host)
        if isinstance(address, IPv4Address):
            return IPv4Network((address, self._ipv4_prefix), strict=False)
        return IPv6Network((address, self._ipv6_prefix), strict=False)

    def _remember(self, host: str) -> object:
        # Plain integers as keys: they hash fast. IPv6 networks are moved past the
        # IPv4 range so that the two never meet.
        try:
            network = self.network(host)
            key: object = int(network.network_address)
            if network.version == 6:
                key = _IPV6_KEYS + int(network.network_address)
        except ValueError:  # not an IP address (a Unix socket, say): its own network
            key = host
        if len(self._keys) >= _MAX_KEYS:
            self._keys.clear()
        self._keys[host] = key
        return key

    def _make_room(self, now: float) -> None:
        table = self._full_at
        # A full bucket is the same as none: forgetting it changes no decision.
        kept = {key: full_at for key, full_at in table.items() if full_at > now}
        room = self._max_networks // _EVICT_SHARE or 1
        excess = len(kept) - (self._max_networks - room)
        if excess > 0:
            # Insertion order: the networks known longest go first.
            for key in list(islice(kept, excess)):
                del kept[key]
            self.evicted += excess
        self._full_at = kept


def slip_reply(query: bytes) -> bytes | None:
    """An empty reply with TC set to ``query``: its id, opcode, RD and question, nothing
    else (no OPT record either), so never larger than the query. None for a message
    that is no query with one readable question."""
    if len(query) < _HEADER_SIZE or query[2] & _QR or query[4:6] != b"\x00\x01":
        return None
    end = _question_end(query)
    if end is None:
        return None
    # id, flags (RCODE 0), one question and no records, the question
    return b"%b%c\x00\x00\x01\x00\x00\x00\x00\x00\x00%b" % (
        query[:2],
        _QR | _TC | (query[2] & _OPCODE_RD),
        query[_HEADER_SIZE:end],
    )


def _question_end(query: bytes) -> int | None:
    """Where the first question ends; None if its name is not plain labels in bounds."""
    position = _HEADER_SIZE
    size = len(query)
    while position < size:
        length = query[position]
        if length == 0:
            end = position + 5  # the root label, then type and class
            return end if end <= size else None
        if length > 63:  # a compression pointer or a reserved label type
            return None
        position += length + 1
    return None
