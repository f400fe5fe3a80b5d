"""The hot path: replies answered from wire bytes the full path built before.

Parsing a query with dnslib and packing its reply costs ten times what the rest of
a lookup does. So the handler keeps the replies it built from the zone, as bytes,
keyed by everything the bytes depend on: the query message itself after its
transaction id (flags, counts, the question exactly as asked, the OPT record with
its payload size), the client's view (its mesh, and which remote services of other
zones it may see), whether the client may recurse (RA), and the
transport (TCP replies are never truncated). A later query with the same key gets the
same bytes with its own transaction id: the question is echoed exactly as asked and
EDNS and truncation are what the full path decided for those very bytes, without
parsing anything. A query that differs in any byte (another case, another EDNS
option) is a different key, answered by the full path the first time; the full path
stays the reference, and the cache can only repeat what it said.

Only authoritative answers (AA: from the zone's own data) are kept; forwarded
answers, errors and refusals are built every time. Replies whose records come in a
random rotation keep a few rotations and serve them in turn.

An :class:`AnswerCache` belongs to one generation of zone tables: the handler makes
a new one with every update, so no answer of an older snapshot is ever served.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from dnsserver.counters import Cell

_AA = 0x04
# Longer queries (unusual: big EDNS options) are always answered in full.
MAX_KEYED_QUERY = 512
# Every so many answers one of the kept rotations is rebuilt with a fresh random
# rotation, so that over time every record gets its turn first, as on the full path.
ROTATIONS = 4
REFRESH_EVERY = 256
_ROTATION_TRIES = 4

# (the query after its id, the client's view: its mesh and the remote services it may
# see, whether it may recurse, over TCP)
Key = tuple[bytes, str, bool, bool]


class _Entry:
    """The cached replies of one key: one, or a few rotations served in turn."""

    __slots__ = ("cell", "replies", "rotated", "served")

    def __init__(self, reply: bytes, rotated: bool, cell: Cell) -> None:
        self.replies = [reply]
        self.rotated = rotated
        self.served = 0
        self.cell = cell  # counts the replies served (dnsserver/counters.py)


# The full path's reply (bytes, or what else it hands the transport) and whether its
# records came in a random rotation.
Built = tuple[object, bool]


# What an entry costs besides its replies: the key, the entry, the dict slot (roughly).
_ENTRY_OVERHEAD = 400


class AnswerCache:
    """Replies by key, least recently used out first.

    Bounded twice: at most ``max_entries`` keys, and at most ``max_bytes`` of replies
    (plus a rough per-entry overhead), since one TCP reply can take 64 kB.
    """

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        count: Callable[[object, bool], Cell | None],
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size_bytes = 0
        # Replies built by the full path because none was kept; `count` counts each and
        # gives the cell that the entry then counts its hits in.
        self.misses = 0
        self._count = count
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _add(self, key: Key, entry: _Entry) -> None:
        self._entries[key] = entry
        self.size_bytes += len(entry.replies[0]) + len(key[0]) + _ENTRY_OVERHEAD
        self._evict()

    def _evict(self) -> None:
        while self._entries and (
            len(self._entries) > self.max_entries or self.size_bytes > self.max_bytes
        ):
            key, entry = self._entries.popitem(last=False)
            self.size_bytes -= sum(map(len, entry.replies)) + len(key[0]) + _ENTRY_OVERHEAD

    def reply(
        self, data: bytes, key: Key, build: Callable[[bytes, Any, bool], Built], client: Any
    ) -> object:
        """The reply to ``data``: from the cache, else ``build(data, client, tcp)`` (the full path).

        ``build``'s reply is kept when it is authoritative (AA set): an answer from the
        zone's own data, never a forwarded one or an error.
        """
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            reply, rotated = build(data, client, key[3])
            cell = self._count(reply, key[3])
            if cell is not None and isinstance(reply, bytes) and reply[2] & _AA:
                self._add(key, _Entry(reply, rotated, cell))
            return reply
        self._entries.move_to_end(key)
        entry.cell.count += 1
        replies = entry.replies
        if entry.rotated:
            # Add rotations up to ROTATIONS, then now and then replace one with a fresh
            # random rotation; serve them in turn.
            served = entry.served = entry.served + 1
            if len(replies) < ROTATIONS or served % REFRESH_EVERY == 0:
                fresh = self._another_rotation(data, client, key[3], replies, build)
                if isinstance(fresh, bytes) and fresh[2] & _AA:
                    if len(replies) < ROTATIONS:
                        replies.append(fresh)
                        self.size_bytes += len(fresh)
                    else:
                        slot = random.randrange(ROTATIONS)
                        self.size_bytes += len(fresh) - len(replies[slot])
                        replies[slot] = fresh
                    self._evict()
                return fresh
            cached = replies[served % len(replies)]
        else:
            cached = replies[0]
        return data[:2] + cached[2:]

    @staticmethod
    def _another_rotation(
        data: bytes,
        client: Any,
        tcp: bool,
        replies: list[bytes],
        build: Callable[[bytes, Any, bool], Built],
    ) -> object:
        """A fresh rotation, preferably one not kept yet (a few random tries)."""
        kept = {reply[2:] for reply in replies}
        for _ in range(_ROTATION_TRIES):
            fresh, _ = build(data, client, tcp)
            if not isinstance(fresh, bytes) or fresh[2:] not in kept:
                break
        return fresh
