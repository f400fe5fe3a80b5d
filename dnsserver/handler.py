"""The DNS request handler: one query's bytes in, the reply's bytes out. Pure.

It touches no socket and no database: it answers from the zone tables of the
last snapshot it was given. Every reply is built here, from the error ladder
(STYLE habit 2), from a lookup's :class:`~dnsserver.lookup.Answer`, or from an
upstream's answer to a question it handed out as a :class:`Forward`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address

from dnsserver import codec
from dnsserver.answers import MAX_KEYED_QUERY, AnswerCache
from dnsserver.codec import Header, Opcode, Query, Rcode, Response
from dnsserver.config import ZoneConfig
from dnsserver.counters import Cell, DnsCounters, Key
from dnsserver.errors import FormError
from dnsserver.forward import Forward, Upstream
from dnsserver.lookup import Answer, Result, lookup
from dnsserver.records import Question, Record, RecordType, Txt, fold_case
from dnsserver.views import ClientZone, Zones, build_zones, update_zones
from dnsserver.zone import Zone
from dnsserver.zonefile import zone_records
from registry.snapshot import Delta, IPAddress, Snapshot

logger = logging.getLogger("meshdns.dns")

# RFC 1035: the UDP size every client accepts; and the most a TCP frame can hold.
_PLAIN_UDP_LIMIT = 512
_TCP_LIMIT = 65535

_RCODES = {
    Result.SUCCESS: Rcode.NOERROR,
    Result.NODATA: Rcode.NOERROR,
    Result.NXDOMAIN: Rcode.NXDOMAIN,
    Result.REFUSED: Rcode.REFUSED,
    # Reached only for clients we do not forward for.
    Result.OUTSIDE_ZONE: Rcode.REFUSED,
}
# Answers from the zone's own data are authoritative (AA).
_FROM_ZONE = (Result.SUCCESS, Result.NODATA, Result.NXDOMAIN)

# The answer cache's bounds: keys, and bytes of replies. A random-name flood turns
# over the least recently used entries and never grows past these.
DEFAULT_CACHE_ENTRIES = 50_000
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
# Clients whose mesh and recursion right are remembered, per snapshot.
_MAX_CLIENT_VIEWS = 65_536


_CLASS_CHAOS = 3
_SERVER_ID_NAMES = ((b"id", b"server"), (b"hostname", b"bind"))
_TRANSFERS = (RecordType.AXFR, RecordType.IXFR)


@dataclass(frozen=True, slots=True)
class Transfer:
    """A zone transfer's reply: several messages, written in order on one TCP connection."""

    messages: tuple[bytes, ...]


class _ClientView:
    """What a client's answers depend on, worked out once per snapshot: the zone it is
    answered from (its mesh's, with the other zones' services it may reach), that
    zone's key among the generation's, and whether it may recurse."""

    __slots__ = ("address", "key", "recursion", "zone")

    def __init__(self, address: IPAddress, zone: ClientZone, recursion: bool) -> None:
        self.address = address
        self.key = zone.key
        self.zone = zone.zone
        self.recursion = recursion


class Handler:
    """Answers DNS queries for the mesh zone from the current snapshot."""

    def __init__(
        self,
        config: ZoneConfig,
        snapshot: Snapshot | None = None,
        *,
        forwarding: bool = False,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self._config = config
        # Whether the transport has upstreams to forward to: without them, nobody
        # gets recursion, and names outside the zone are REFUSED for everyone.
        self._forwarding = forwarding
        self._cache_entries = cache_entries
        self._cache_bytes = cache_bytes
        self.counters = DnsCounters()
        self._misses = 0  # replies built in full by earlier generations and uncached
        self._zones: Zones = build_zones(config, snapshot or Snapshot.empty())
        self._new_generation()

    @property
    def config(self) -> ZoneConfig:
        return self._config

    @property
    def zones(self) -> Zones:
        """The zone tables answered from now."""
        return self._zones

    @property
    def cache(self) -> AnswerCache:
        """The replies kept for the current zone tables."""
        return self._cache

    def counts(self) -> tuple[dict[Key, int], int, int]:
        """Since the start: replies by counter key (dnsserver/counters.py), replies served
        from the answer cache, and replies built in full (forwarded ones included)."""
        counters = self.counters
        return counters.replies(), counters.cache_hits(), self._misses + self._cache.misses

    def _count(self, reply: object, tcp: bool) -> Cell | None:
        """Count a reply built in full; the cell of its kind (for the cache's entry)."""
        if isinstance(reply, bytes):
            return self.counters.count(reply, tcp)
        if reply is None:
            self.counters.unanswered[tcp] += 1
        elif isinstance(reply, Transfer):
            self.counters.count(reply.messages[0], tcp)
        # A Forward is counted when its reply is built (forwarded).
        return None

    def _new_generation(self) -> None:
        # Everything remembered about answers belongs to one generation of the tables:
        # dropped with them, so nothing from an older snapshot is ever served.
        old = getattr(self, "_cache", None)
        if old is not None:
            self._misses += old.misses
        self._cache = AnswerCache(self._cache_entries, self._cache_bytes, self._count)
        self._clients: dict[object, _ClientView] = {}

    def update(self, snapshot: Snapshot, delta: Delta | None = None) -> None:
        """Answer from ``snapshot`` from now on.

        Without ``delta`` the zone tables are rebuilt from the whole snapshot; with
        one, only the services and meshes it names are redone, which costs what
        changed rather than what the registry holds. Either way the new tables are
        swapped in with one assignment, so a query in flight sees the old view or the
        new one, never a mix.
        """
        if delta is None:
            zones = build_zones(self._config, snapshot)
        else:
            zones = update_zones(self._zones, snapshot, delta)
        self._zones = zones
        self._new_generation()

    def may_recurse(self, client: IPAddress) -> bool:
        """Whether names outside the zone are forwarded for ``client``."""
        if not self._forwarding:
            return False
        if self._config.recursion_for_dataplanes and self._zones.is_dataplane(client):
            return True
        return any(client in network for network in self._config.allow_recursion)

    def handle(
        self, data: bytes, client: IPAddress, *, tcp: bool = False
    ) -> bytes | Forward | Transfer | None:
        """The reply to the message ``data`` from ``client``; None to send nothing.

        A :class:`Forward` asks the transport to get the upstreams' answer and pass it
        to :meth:`forwarded`, which builds the reply.
        """
        view = self._clients.get(client)
        if view is None:
            view = self._client_view(client, client)
        return self._handle(data, view, tcp)

    def handle_peer(
        self, data: bytes, host: str, *, tcp: bool = False
    ) -> bytes | Forward | Transfer | None:
        """:meth:`handle` for a client known by the address text its socket gave."""
        view = self._clients.get(host)
        if view is None:
            view = self._client_view(host, client_address(host))
        return self._handle(data, view, tcp)

    def _client_view(self, key: object, client: IPAddress) -> _ClientView:
        view = _ClientView(client, self._zones.client_zone(client), self.may_recurse(client))
        if len(self._clients) >= _MAX_CLIENT_VIEWS:
            self._clients.clear()
        self._clients[key] = view
        return view

    def _handle(
        self, data: bytes, view: _ClientView, tcp: bool
    ) -> bytes | Forward | Transfer | None:
        if len(data) > MAX_KEYED_QUERY or not self._cache_entries:
            self._misses += 1
            built = self._full(data, view, tcp)[0]
            self._count(built, tcp)
            return built
        # The zone's key, not the mesh: clients of one mesh may see different services.
        key = (data[2:], view.key, view.recursion, tcp)
        reply = self._cache.reply(data, key, self._full, view)
        return reply  # type: ignore[return-value]  # what _full gave, or cached bytes

    def _full(
        self, data: bytes, view: _ClientView, tcp: bool
    ) -> tuple[bytes | Forward | Transfer | None, bool]:
        """The full path: parse with the codec, look up, encode; and whether it rotated."""
        header = codec.parse_header(data)
        # Too short to answer, or a response: answering responses invites loops.
        if header is None or header.qr:
            return None, False
        try:
            return self._respond(header, data, view, tcp=tcp)
        except Exception as exc:
            question = codec.read_question(data)
            logger.error(
                "SERVFAIL for %s from %s: %r",
                _describe(question),
                view.address,
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            reply = Response(
                id=header.id,
                opcode=header.opcode,
                rcode=Rcode.SERVFAIL,
                rd=header.rd,
                question=question,
            )
            return codec.encode_response(reply, _PLAIN_UDP_LIMIT), False

    def forwarded(self, forward: Forward, upstream: Upstream) -> bytes:
        """The reply to a forwarded query, from the upstreams' answer."""
        query = forward.query
        response = Response(
            id=query.header.id,
            opcode=query.header.opcode,
            rcode=upstream.rcode,
            rd=query.header.rd,
            ra=True,
            question=query.question,
            answer=upstream.answer,
            authority=upstream.authority,
            additional=upstream.additional,
            edns_payload=self._edns_payload(query),
        )
        reply = codec.encode_response(response, self._size_limit(query, tcp=forward.tcp))
        self.counters.count(reply, forward.tcp)
        return reply

    def _respond(
        self, header: Header, data: bytes, view: _ClientView, *, tcp: bool
    ) -> tuple[bytes | Forward | Transfer, bool]:
        try:
            query = codec.parse_query(data)
        except FormError as error:
            rcode = Rcode.NOTIMP if header.opcode != Opcode.QUERY else Rcode.FORMERR
            return self._error(header, rcode, error.question), False
        if header.opcode != Opcode.QUERY:
            return self._error(header, Rcode.NOTIMP, query.question, query), False
        if query.edns is not None and query.edns.version != 0:
            return self._error(header, Rcode.BADVERS, query.question, query), False
        question = query.question
        if question.qclass == _CLASS_CHAOS and self._config.server_id is not None:
            return self._server_id(query, tcp=tcp), False
        if question.qclass != codec.CLASS_IN:
            return self._error(header, Rcode.REFUSED, question, query), False
        if question.qtype in _TRANSFERS and self._may_transfer(view.address, question):
            return self._transfer(query, tcp=tcp), False

        answer = lookup(view.zone, query.question.name, query.question.qtype)
        recursion = view.recursion
        # Only questions that ask for recursion (RD) are forwarded.
        if answer.result is Result.OUTSIDE_ZONE and recursion and header.rd:
            return Forward(query=query, tcp=tcp), False
        return self._reply(query, answer, tcp=tcp, ra=recursion), answer.rotated

    def _may_transfer(self, client: IPAddress, question: Question) -> bool:
        origin = self._zones.origin
        return fold_case(question.name) == origin and any(
            client in network for network in self._config.allow_transfer
        )

    def transfer_zone(self) -> Zone:
        """What a transfer of ``--domain``'s zone sends: the default mesh's view
        (secondaries are no dataplanes). The hostname zones are not transferred."""
        return self._zones.mesh_zone(self._config.default_mesh)

    def _transfer(self, query: Query, *, tcp: bool) -> bytes | Transfer:
        """AXFR over TCP; IXFR answered as a full transfer (RFC 1995 section 4 allows it)
        over TCP, and over UDP with the SOA alone, which tells the client to use TCP."""
        zone = self.transfer_zone()
        records = zone_records(zone)
        if not tcp:
            if query.question.qtype == RecordType.AXFR:  # RFC 5936: AXFR is TCP only
                return self._error(query.header, Rcode.REFUSED, query.question, query)
            return self._reply(
                query, Answer(Result.SUCCESS, answer=(records[0],)), tcp=False, ra=False
            )
        messages = codec.encode_transfer(query.header.id, query.question, [*records, records[0]])
        return Transfer(tuple(messages))

    def _server_id(self, query: Query, *, tcp: bool) -> bytes:
        question = query.question
        if fold_case(question.name) not in _SERVER_ID_NAMES or question.qtype not in (
            RecordType.TXT,
            RecordType.ANY,
        ):
            return self._error(query.header, Rcode.REFUSED, question, query)
        text = (self._config.server_id or "").encode()
        record = Record(owner=question.name, ttl=0, data=Txt((text,)), rclass=_CLASS_CHAOS)
        return self._reply(query, Answer(Result.SUCCESS, answer=(record,)), tcp=tcp, ra=False)

    def _reply(self, query: Query, answer: Answer, *, tcp: bool, ra: bool) -> bytes:
        header = query.header
        response = Response(
            id=header.id,
            opcode=header.opcode,
            rcode=_RCODES[answer.result],
            rd=header.rd,
            aa=answer.result in _FROM_ZONE,
            ra=ra,
            question=query.question,
            answer=answer.answer,
            authority=answer.authority,
            additional=answer.additional,
            edns_payload=self._edns_payload(query),
        )
        return codec.encode_response(response, self._size_limit(query, tcp=tcp))

    def _error(
        self, header: Header, rcode: Rcode, question: Question | None, query: Query | None = None
    ) -> bytes:
        response = Response(
            id=header.id,
            opcode=header.opcode,
            rcode=rcode,
            rd=header.rd,
            question=question,
            edns_payload=self._edns_payload(query) if query else None,
        )
        return codec.encode_response(response, _PLAIN_UDP_LIMIT)

    def _edns_payload(self, query: Query) -> int | None:
        # RFC 6891: a reply to a query with an OPT record carries one too.
        return self._config.max_udp_payload if query.edns is not None else None

    def _size_limit(self, query: Query, *, tcp: bool) -> int:
        if tcp:
            return _TCP_LIMIT
        if query.edns is None:
            return _PLAIN_UDP_LIMIT
        # RFC 6891: advertised sizes below 512 are treated as 512.
        return min(max(_PLAIN_UDP_LIMIT, query.edns.payload), self._config.max_udp_payload)


def client_address(host: str) -> IPAddress:
    """The client's address as the snapshot keys it: scope dropped, IPv4 unmapped."""
    address = ip_address(host.split("%", 1)[0])
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _describe(question: Question | None) -> str:
    if question is None:
        return "an unreadable question"
    name = b".".join(question.name).decode("ascii", "backslashreplace") + "."
    return f"{name} type {question.qtype} class {question.qclass}"
