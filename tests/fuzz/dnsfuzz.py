"""The DNS fuzzing kit of tests/fuzz/test_dns_fuzz.py and scripts/fuzz-dns.

- seed queries: well-formed questions that reach every part of the handler (zone
  answers, NXDOMAIN, SRV, reverse, CHAOS, transfers, forwarding, EDNS, other opcodes);
- mutations: pure functions of the packet and explicit parameters, so that hypothesis
  (which shrinks them) and a seeded random engine (which is fast) drive the same ones;
- hostile fragments: names and records that break parsers (compression loops, long
  labels, bogus OPT records);
- the oracle, :func:`judge`: what every reply of :meth:`Handler.handle` must be.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from dnsserver import Handler, ZoneConfig
from dnsserver.forward import Forward, Upstream
from dnsserver.handler import Transfer
from tests.dns.dnstesting import OTHER_DATAPLANE, OUTSIDER, standard_config, standard_snapshot

HEADER = 12
QR = 0x80  # in the third byte of the header
ZONE = (b"mesh",)
PLAIN_UDP_LIMIT = 512
EDNS_UDP_LIMIT = 1232
TCP_LIMIT = 65535
SERVFAIL = 2

LOOPBACK = ip_address("127.0.0.1")
# Who asks: an outsider (REFUSED outside the zone), a dataplane of another mesh,
# loopback (may recurse and transfer), and IPv6 loopback.
CLIENTS: tuple[IPv4Address | IPv6Address, ...] = (
    OUTSIDER,
    OTHER_DATAPLANE,
    LOOPBACK,
    ip_address("::1"),
)
# Socket-style peers for Handler.handle_peer: mapped, scoped and plain addresses.
PEERS = ("127.0.0.1", "::ffff:192.0.2.1", "fe80::1%lo", "10.1.0.1", "::1")


def fuzz_handler() -> Handler:
    """The standard test registry, answered with everything switched on: forwarding,
    transfers for loopback, and the CHAOS identity."""
    config: ZoneConfig = standard_config(
        allow_transfer=(ip_network("127.0.0.0/8"), ip_network("::1/128")),
        server_id="meshdns-fuzz",
    )
    return Handler(config, standard_snapshot(), forwarding=True)


def _query(
    name: str,
    rdtype: str = "A",
    *,
    rdclass: str = "IN",
    edns: int | None = None,
    payload: int = 1232,
    options: tuple[dns.edns.Option, ...] = (),
    dnssec: bool = False,
    rd: bool = True,
    opcode: int = 0,
) -> bytes:
    message = dns.message.make_query(
        name,
        dns.rdatatype.from_text(rdtype),
        dns.rdataclass.from_text(rdclass),
        use_edns=edns if edns is not None else (0 if options or dnssec else False),
        payload=payload,
        options=list(options),
        want_dnssec=dnssec,
    )
    message.id = 0x4242
    if not rd:
        message.flags &= ~dns.flags.RD
    message.set_opcode(opcode)
    return message.to_wire()


COOKIE = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)
ECS = dns.edns.ECSOption("10.0.0.0", 24)
PADDING = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\x00" * 64)

SEEDS: tuple[bytes, ...] = (
    _query("web.mesh."),
    _query("web.mesh.", "AAAA", edns=0),
    _query("backend.mesh.", "A", edns=0, dnssec=True),
    _query("_backend._tcp.mesh.", "SRV", edns=0),
    _query("_big._tcp.mesh.", "SRV"),  # cut for UDP, TC
    _query("big.endpoints.mesh.", "A", edns=0, payload=4096),
    _query("backend.endpoints.mesh.", "AAAA"),
    _query("backend.kuma-demo.svc.8080.mesh.", "A"),
    _query("mesh.", "SOA"),
    _query("mesh.", "NS", edns=0),
    _query("mesh.", "ANY"),
    _query("web.mesh.", "TXT"),  # NODATA
    _query("nope.mesh.", "A"),  # NXDOMAIN
    _query("WeB.MeSh.", "A"),
    _query("0a000001.addr.mesh.", "A"),
    _query("1.0.0.10.in-addr.arpa.", "PTR"),
    _query("2.0.0.240.in-addr.arpa.", "PTR", edns=0),
    _query("example.com.", "A"),  # outside: forwarded for loopback, REFUSED otherwise
    _query("example.com.", "MX", rd=False),
    _query("id.server.", "TXT", rdclass="CH"),
    _query("hostname.bind.", "TXT", rdclass="CH"),
    _query("web.mesh.", "A", rdclass="HS"),
    _query("mesh.", "AXFR"),
    _query("mesh.", "IXFR"),
    _query("web.mesh.", "A", edns=1),  # BADVERS
    _query("web.mesh.", "A", options=(COOKIE, ECS, PADDING)),
    _query("web.mesh.", "A", edns=0, payload=0),
    _query("web.mesh.", "A", opcode=dns.opcode.NOTIFY),
    _query("web.mesh.", "A", opcode=dns.opcode.UPDATE),
    _query("web.mesh.", "A", opcode=3),
    _query(".", "NS"),
)


# Hostile question names (wire form), each placed at offset 12 of a message.
NAMES: tuple[bytes, ...] = (
    b"\xc0\x0c",  # a pointer to itself
    b"\xc0\x0e\xc0\x0c",  # two pointers to each other
    b"\x03web\xc0\x0c",  # a label, then back to the start
    b"\xc0\xff",  # a pointer past the end
    b"\xc0\x00",  # a pointer into the header
    b"\x40" + b"a" * 64 + b"\x04mesh\x00",  # a 64-byte label
    (b"\x3f" + b"a" * 63) * 4 + b"\x00",  # 257 bytes
    (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"a" * 61 + b"\x00",  # 255 bytes exactly
    b"\x01a" * 128 + b"\x00",  # 257 bytes in one-byte labels
    b"\xff" + b"x" * 10,  # a label running off the end
    b"\x03\xff\xfe\xfd\x04mesh\x00",  # not UTF-8
    b"\x03a.b\x04mesh\x00",  # a dot inside a label
    b"\x03a\x00b\x04mesh\x00",  # NUL inside a label
    b"\x00",  # the root
    b"\x41\x01\x04mesh\x00",  # an extended label type (0x40)
    b"\x80\x01\x04mesh\x00",  # the reserved label type (0x80)
    b"\x04MESH\x00",
    b"\x01*\x04mesh\x00",
    b"\x04_tcp\x04mesh\x00",
    b"\x04addr\x04mesh\x00",
    b"\x09endpoints\x04mesh\x00",
    b"\x08zzzzzzzz\x04addr\x04mesh\x00",
    b"\x20" + b"f" * 32 + b"\x04addr\x04mesh\x00",
    b"\x03256\x010\x010\x0210\x07in-addr\x04arpa\x00",
    b"\x011" * 40 + b"\x03ip6\x04arpa\x00",
    b"\x04_web\x04_tcp\x04mesh\x00",
    b"\x08backend_\x04mesh\x00",
    b"\x02ns\x04mesh\x00",
)


def opt_record(
    payload: int = 1232,
    ext_rcode: int = 0,
    version: int = 0,
    flags: int = 0,
    rdata: bytes = b"",
    *,
    owner: bytes = b"\x00",
    rdlength: int | None = None,
) -> bytes:
    """An OPT record (RFC 6891) as bytes, every field settable, lies included."""
    length = len(rdata) if rdlength is None else rdlength
    ttl = (ext_rcode << 24) | (version << 16) | flags
    return owner + struct.pack("!HHIH", 41, payload, ttl, length) + rdata


def option(code: int, data: bytes, *, length: int | None = None) -> bytes:
    return struct.pack("!HH", code, len(data) if length is None else length) + data


# Hostile records, appended to a message (its counts are set separately, or not at all).
RECORDS: tuple[bytes, ...] = (
    opt_record(),
    opt_record(payload=0),
    opt_record(payload=511),
    opt_record(payload=65535),
    opt_record(version=1),
    opt_record(version=255, ext_rcode=255),
    opt_record(flags=0x8000),  # DO
    opt_record(flags=0x7FFF),  # Z bits
    opt_record(rdata=option(10, b"\x01" * 8)),  # cookie
    opt_record(rdata=option(10, b"\x01" * 40)),  # cookie too long
    opt_record(rdata=option(10, b"\x01" * 3)),  # cookie too short
    opt_record(rdata=option(8, b"\x00\x01\x18\x00\x0a\x00\x00")),  # ECS 10.0.0.0/24
    opt_record(rdata=option(8, b"\x00\x07\xc8\x00")),  # ECS family 7, prefix 200
    opt_record(rdata=option(12, b"\x00" * 1000)),  # padding
    opt_record(rdata=option(10, b"\x01" * 4, length=100)),  # option length past its data
    opt_record(rdata=b"\x00\x0a"),  # half an option header
    opt_record(rdata=option(65001, b"x")),
    opt_record(rdlength=200),  # rdlength past the end of the message
    opt_record(owner=b"\x03web\x00"),  # OPT not owned by the root
    opt_record() + opt_record(),  # two OPT records
    b"\x00" + struct.pack("!HHIH", 250, 255, 0, 0),  # an empty TSIG
    b"\x00" + struct.pack("!HHIH", 250, 255, 0, 10) + b"\x00" * 10,  # a garbage TSIG
    b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + b"\x0a\x00\x00\x01",  # an A record
    b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 1000) + b"\x0a",  # rdlength past the end
    b"\xc0\x30" + struct.pack("!HHIH", 1, 1, 30, 0),  # a record whose name points forward
    b"\x00" * 11,
)


# The mutations: pure, total (any parameters give some packet), composable.


def flip(data: bytes, position: int, bit: int) -> bytes:
    if not data:
        return data
    position %= len(data)
    return data[:position] + bytes([data[position] ^ (1 << (bit % 8))]) + data[position + 1 :]


def overwrite(data: bytes, position: int, blob: bytes) -> bytes:
    position %= len(data) + 1
    return data[:position] + blob + data[position + len(blob) :]


def truncate(data: bytes, length: int) -> bytes:
    return data[: length % (len(data) + 1)]


def insert(data: bytes, position: int, blob: bytes) -> bytes:
    position %= len(data) + 1
    return data[:position] + blob + data[position:]


def delete(data: bytes, position: int, count: int) -> bytes:
    position %= len(data) + 1
    return data[:position] + data[position + count :]


def set_word(data: bytes, offset: int, value: int) -> bytes:
    """Set the 16-bit word at ``offset`` (header id, flags and counts; qtype, qclass)."""
    data = data.ljust(offset + 2, b"\x00")
    return data[:offset] + struct.pack("!H", value & 0xFFFF) + data[offset + 2 :]


def set_count(data: bytes, section: int, value: int) -> bytes:
    """QDCOUNT, ANCOUNT, NSCOUNT or ARCOUNT (section 0 to 3)."""
    return set_word(data, 4 + 2 * (section % 4), value)


def set_flags(data: bytes, value: int) -> bytes:
    """The whole flags word: QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode."""
    return set_word(data, 2, value)


def question_end(data: bytes) -> int:
    """Where the first question's name ends (after its terminator or pointer), or the end."""
    position = HEADER
    while position < len(data):
        length = data[position]
        if length == 0:
            return position + 1
        if length & 0xC0:
            return min(position + 2, len(data))
        position += 1 + length
    return len(data)


def set_name(data: bytes, name: bytes) -> bytes:
    """Replace the first question's name, keeping what follows it."""
    return data[:HEADER] + name + data[question_end(data) :]


def set_question_word(data: bytes, which: int, value: int) -> bytes:
    """Set the first question's qtype (0) or qclass (1)."""
    return set_word(data, question_end(data) + 2 * (which % 2), value)


def append_record(data: bytes, record: bytes, section: int | None = 3) -> bytes:
    """Append ``record`` and count it in ``section`` (or in none: a count that lies)."""
    grown = data + record
    if section is None or len(grown) < HEADER:
        return grown
    offset = 4 + 2 * (section % 4)
    (count,) = struct.unpack("!H", grown[offset : offset + 2])
    return set_word(grown, offset, count + 1)


# Interesting values for words, counts and positions.
WORDS = (0, 1, 2, 3, 4, 5, 6, 41, 250, 251, 252, 253, 254, 255, 256, 0x7FFF, 0x8000, 0xFFFF)


class RandomMutator:
    """The seeded engine of scripts/fuzz-dns: a seed packet, or random bytes, then a few
    mutations drawn with ``rng``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def packet(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.1:
            return rng.randbytes(rng.choice((0, 1, 2, 11, 12, 13, rng.randrange(600))))
        data = rng.choice(SEEDS)
        for _ in range(rng.choice((0, 1, 1, 1, 2, 2, 3, 5))):
            data = self.mutate(data)
        return data

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        word = rng.choice(WORDS) if rng.random() < 0.7 else rng.randrange(0x10000)
        position = rng.randrange(max(len(data), 1) + 1)
        choice = rng.randrange(12)
        if choice == 0:
            return flip(data, position, rng.randrange(8))
        if choice == 1:
            return truncate(data, position)
        if choice == 2:
            return overwrite(data, position, rng.randbytes(rng.randrange(1, 8)))
        if choice == 3:
            return insert(data, position, rng.randbytes(rng.randrange(1, 32)))
        if choice == 4:
            return delete(data, position, rng.randrange(1, 16))
        if choice == 5:
            return set_count(data, rng.randrange(4), word)
        if choice == 6:
            return set_flags(data, word if rng.random() < 0.5 else rng.randrange(0x10000))
        if choice == 7:
            return set_name(data, rng.choice(NAMES))
        if choice == 8:
            return set_question_word(data, rng.randrange(2), word)
        if choice == 9:
            section = rng.choice((0, 1, 2, 3, 3, 3, None))
            return append_record(data, rng.choice(RECORDS), section)
        if choice == 10:
            return overwrite(data, position, rng.choice(NAMES))
        return insert(data, position, rng.choice(RECORDS))


# The oracle.


class BadReply(AssertionError):
    """A reply that breaks the handler's contract."""


@dataclass
class Tally:
    """What the handler made of the packets: counts by outcome, and by rcode."""

    outcomes: Counter[str] = field(default_factory=Counter)
    rcodes: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        outcomes = ", ".join(f"{name} {count:,}" for name, count in self.outcomes.most_common())
        rcodes = ", ".join(f"{name} {count:,}" for name, count in self.rcodes.most_common())
        return f"{outcomes}; replies by rcode: {rcodes}"


UPSTREAM_ANSWERS = (
    Upstream(rcode=0),
    Upstream(rcode=3),
    Upstream(rcode=2),
)


def judge(
    handler: Handler,
    data: bytes,
    reply: object,
    *,
    tcp: bool,
    tally: Tally | None = None,
) -> None:
    """Check one reply of ``handler.handle(data, ...)``; raise :class:`BadReply`."""
    tally = tally if tally is not None else Tally()
    if len(data) < HEADER or data[2] & QR:
        _require(reply is None, "a message too short for a header, or a response, is dropped")
        tally.outcomes["dropped"] += 1
        return
    if isinstance(reply, Forward):
        _require(reply.tcp == tcp, "a Forward remembers its transport")
        name = tuple(label.lower() for label in reply.question.name)
        _require(name[-len(ZONE) :] != ZONE, "names in the zone are never forwarded")
        tally.outcomes["forwarded"] += 1
        for upstream in UPSTREAM_ANSWERS:
            well_formed(data, handler.forwarded(reply, upstream), tcp=tcp, tally=tally)
        return
    if isinstance(reply, Transfer):
        _require(tcp, "transfers only over TCP")
        _require(len(reply.messages) >= 1, "a transfer sends at least one message")
        tally.outcomes["transfer"] += 1
        for message in reply.messages:
            well_formed(data, message, tcp=True, tally=tally)
        return
    _require(isinstance(reply, bytes), f"a reply is bytes, a Forward or a Transfer: {reply!r}")
    assert isinstance(reply, bytes)
    tally.outcomes["answered"] += 1
    well_formed(data, reply, tcp=tcp, tally=tally)


def well_formed(query: bytes, reply: bytes, *, tcp: bool, tally: Tally) -> None:
    """``reply`` parses, answers ``query`` (QR, its id and opcode) and fits its transport."""
    limit = TCP_LIMIT if tcp else EDNS_UDP_LIMIT
    _require(HEADER <= len(reply) <= limit, f"a reply of {len(reply)} bytes (limit {limit})")
    _require(reply[2] & QR, "QR is set")
    _require(reply[:2] == query[:2], "the reply has the query's id")
    opcode = (reply[2] >> 3) & 0xF
    _require(opcode == (query[2] >> 3) & 0xF, "the reply has the query's opcode")
    questions, edns, rcode, ra = _parsed(reply)
    _require(questions <= 1, "at most one question is echoed")
    if not tcp and not edns:
        _require(len(reply) <= PLAIN_UDP_LIMIT, f"{len(reply)} bytes over UDP without EDNS")
    # Nothing the handler does on its own fails: SERVFAIL would be an exception caught.
    # (A forwarded SERVFAIL, with RA, is the upstream's.)
    _require(rcode != SERVFAIL or ra, "no SERVFAIL from the zone")
    tally.rcodes[dns.rcode.to_text(rcode)] += 1


# dnspython's reading of replies, by their bytes after the id: most replies recur (the
# same seed from another client), and reading a 300-record one costs milliseconds.
_PARSED: dict[bytes, tuple[int, bool, int, bool]] = {}


def _parsed(reply: bytes) -> tuple[int, bool, int, bool]:
    """Questions, whether there is an OPT record, the rcode and RA of a reply that must
    parse with dnspython."""
    known = _PARSED.get(reply[2:])
    if known is not None:
        return known
    # dnspython reads an UPDATE by RFC 2136 (its zone section must ask for an SOA); a
    # NOTIMP echoes whatever the client sent there, so read the rest as a plain query.
    opcode = (reply[2] >> 3) & 0xF
    readable = reply[:2] + bytes([reply[2] & 0x87]) + reply[3:] if opcode == 5 else reply
    try:
        message = dns.message.from_wire(readable, one_rr_per_rrset=True)
    except Exception as error:
        raise BadReply(f"the reply does not parse: {error!r}; reply {reply.hex()}") from None
    verdict = (
        len(message.question),
        message.edns >= 0,
        message.rcode(),
        bool(message.flags & dns.flags.RA),
    )
    if len(_PARSED) >= 100_000:
        _PARSED.clear()
    _PARSED[reply[2:]] = verdict
    return verdict


def _require(condition: object, what: str) -> None:
    if not condition:
        raise BadReply(what)


def ask(handler: Handler, data: bytes, client: object, *, tcp: bool) -> object:
    """``handler``'s reply, by address or by socket peer text; exceptions escape."""
    if isinstance(client, str):
        return handler.handle_peer(data, client, tcp=tcp)
    return handler.handle(data, client, tcp=tcp)  # type: ignore[arg-type]


# What a healthy handler still answers after the fuzzing, compared byte for byte (but
# for the id) with a fresh handler's answers.
HEALTH_QUERIES = (
    _query("web.mesh."),
    _query("nope.mesh."),
    _query("mesh.", "SOA", edns=0),
    _query("backend.kuma-demo.svc.8080.mesh."),
)


def still_healthy(handler: Handler) -> None:
    """``handler`` answers normal queries as a fresh one does, over UDP and TCP."""
    fresh = fuzz_handler()
    for data in HEALTH_QUERIES:
        for tcp in (False, True):
            for client in (OUTSIDER, LOOPBACK):
                got = handler.handle(data, client, tcp=tcp)
                want = fresh.handle(data, client, tcp=tcp)
                _require(got == want, f"after fuzzing, {data.hex()} is answered {got!r}")
    answer = dns.message.from_wire(handler.handle(SEEDS[0], OUTSIDER))  # type: ignore[arg-type]
    _require(
        [rdata.to_text() for rrset in answer.answer for rdata in rrset] == ["240.0.0.2"],
        "web.mesh. is 240.0.0.2",
    )
