"""The DNS wire codec: bytes in, plain values out, and back. Pure; no sockets.

The only module of the package that knows dnslib: the rest works with
:mod:`dnsserver.records` and the values defined here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address

from dnslib import (
    AAAA,
    CNAME,
    EDNS0,
    MX,
    NS,
    PTR,
    RR,
    SOA,
    SRV,
    TXT,
    A,
    DNSBuffer,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
)

from dnsserver.errors import DnsError, FormError
from dnsserver.records import (
    Cname,
    Mx,
    Name,
    Ns,
    Ptr,
    Question,
    Record,
    RecordData,
    RecordType,
    Soa,
    Srv,
    Txt,
)

HEADER_SIZE = 12
CLASS_IN = 1
# RFC 1035 2.3.4: at most 255 bytes on the wire, 63 per label.
_MAX_NAME_WIRE_LENGTH = 255
_MAX_LABEL_LENGTH = 63
_MAX_POINTER_OFFSET = 0x3FFF


class Opcode(IntEnum):
    """Message opcodes (RFC 1035, 1996, 2136)."""

    QUERY = 0
    IQUERY = 1
    STATUS = 2
    NOTIFY = 4
    UPDATE = 5


class Rcode(IntEnum):
    """Response codes; values above 15 need EDNS0's extended rcode (RFC 6891)."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16


@dataclass(frozen=True, slots=True)
class Header:
    """The fields of a message header that decide how (and whether) to answer it."""

    id: int
    qr: bool
    opcode: int
    rd: bool
    qdcount: int


@dataclass(frozen=True, slots=True)
class Edns:
    """What a query's OPT record asks for (RFC 6891)."""

    payload: int
    version: int
    dnssec_ok: bool


@dataclass(frozen=True, slots=True)
class Query:
    """A well-formed query message: one question, at most one OPT record."""

    header: Header
    question: Question
    edns: Edns | None


@dataclass(frozen=True, slots=True)
class Response:
    """Everything a reply says; :func:`encode_response` turns it into bytes."""

    id: int
    opcode: int
    rcode: int
    rd: bool
    aa: bool = False
    # Recursion available: set only for clients we forward for.
    ra: bool = False
    question: Question | None = None
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    # Our EDNS0 UDP payload size; None when the reply carries no OPT record.
    edns_payload: int | None = None


def parse_header(data: bytes) -> Header | None:
    """Read the header of ``data``; None when it is too short to have one."""
    if len(data) < HEADER_SIZE:
        return None
    header = DNSHeader.parse(DNSBuffer(data[:HEADER_SIZE]))
    return Header(
        id=header.id,
        qr=bool(header.qr),
        opcode=header.opcode,
        rd=bool(header.rd),
        qdcount=header.q,
    )


def parse_query(data: bytes) -> Query:
    """Decode a query message; raise :class:`FormError` when it is malformed."""
    header = parse_header(data)
    if header is None:
        raise FormError(f"message of {len(data)} bytes is shorter than a DNS header")
    if header.qdcount != 1:
        raise FormError(f"a query must ask exactly one question, this one asks {header.qdcount}")
    buffer = DNSBuffer(data)
    # dnslib raises more than DNSError on hostile input (BufferError, BimapError,
    # RecursionError on long pointer chains...): whatever it raises, the message
    # is malformed.
    try:
        parsed = DNSHeader.parse(buffer)
        question = _question(DNSQuestion.parse(buffer))
    except Exception as exc:
        raise FormError(f"unreadable question: {exc}") from exc
    try:
        answer = [RR.parse(buffer) for _ in range(parsed.a)]
        authority = [RR.parse(buffer) for _ in range(parsed.auth)]
        additional = [RR.parse(buffer) for _ in range(parsed.ar)]
    except Exception as exc:
        raise FormError(f"unreadable record: {exc}", question=question) from exc
    if buffer.remaining():
        raise FormError(
            f"{buffer.remaining()} bytes of trailing garbage after the last record",
            question=question,
        )
    if any(rr.rtype == RecordType.OPT for rr in (*answer, *authority)):
        raise FormError("an OPT record outside the additional section", question=question)
    return Query(header=header, question=question, edns=_edns(additional, question))


def encode_response(response: Response, limit: int) -> bytes:
    """Encode ``response`` in at most ``limit`` bytes.

    Records that do not fit are cut at a record boundary, from the end (additional,
    then authority, then answer); the OPT record is always kept. TC is set when an
    answer or authority record had to go, not for additional records alone (RFC 2181
    section 9: extra information that did not fit is no reason to retry over TCP).
    ``limit`` must hold the header, question and OPT record; 512 always does.
    """
    if response.rcode > 0xF and response.edns_payload is None:
        raise DnsError(f"rcode {response.rcode} needs an OPT record to be expressed")
    sections = (response.answer, response.authority, response.additional)
    records = [record for section in sections for record in section]
    opt = _pack_opt(response) if response.edns_payload is not None else b""

    # dnslib's own truncate() drops every record, so pack record by record and
    # remember where each ends; compression pointers only point backwards, so any
    # prefix of the packed message is itself a valid message body.
    buffer = DNSBuffer()
    buffer.names = _PointableNames()
    DNSHeader(id=0, bitmap=0).pack(buffer)
    if response.question is not None:
        question = response.question
        DNSQuestion(DNSLabel(question.name), question.qtype, question.qclass).pack(buffer)
    body_end = buffer.offset
    ends = []
    for record in records:
        _to_rr(record).pack(buffer)
        ends.append(buffer.offset)

    kept = 0
    while kept < len(ends) and ends[kept] + len(opt) <= limit:
        kept += 1
    if kept:
        body_end = ends[kept - 1]
    counts = _section_counts(kept, sections)
    header = DNSHeader(
        id=response.id,
        bitmap=0,
        q=0 if response.question is None else 1,
        a=counts[0],
        auth=counts[1],
        ar=counts[2] + (1 if opt else 0),
        qr=1,
        opcode=response.opcode,
        aa=int(response.aa),
        tc=int(kept < len(response.answer) + len(response.authority)),
        rd=int(response.rd),
        ra=int(response.ra),
        rcode=response.rcode & 0xF,
    )
    header_buffer = DNSBuffer()
    header.pack(header_buffer)
    return bytes(header_buffer.data) + bytes(buffer.data[HEADER_SIZE:body_end]) + opt


# Messages of a zone transfer stop short of TCP's limit, leaving room for the header.
_TRANSFER_MESSAGE_LIMIT = 60_000
_LARGEST_RECORD = 2 * _MAX_NAME_WIRE_LENGTH + 40


def encode_transfer(query_id: int, question: Question, records: list[Record]) -> list[bytes]:
    """An AXFR answer (RFC 5936): ``records`` (SOA first and last) over as many messages
    as they need, each authoritative, the question in the first only."""
    messages: list[bytes] = []
    start = 0
    while start < len(records) or not messages:
        buffer = DNSBuffer()
        buffer.names = _PointableNames()
        DNSHeader(id=0, bitmap=0).pack(buffer)
        if not messages:
            DNSQuestion(DNSLabel(question.name), question.qtype, question.qclass).pack(buffer)
        end = start
        # Room for one more record of the largest kind (an SOA of two full names).
        while end < len(records) and buffer.offset + _LARGEST_RECORD <= _TRANSFER_MESSAGE_LIMIT:
            _to_rr(records[end]).pack(buffer)
            end += 1
        header = DNSHeader(id=query_id, bitmap=0, q=0 if messages else 1, a=end - start, qr=1, aa=1)
        header_buffer = DNSBuffer()
        header.pack(header_buffer)
        messages.append(bytes(header_buffer.data) + bytes(buffer.data[HEADER_SIZE:]))
        start = end
    return messages


def encode_notify(message_id: int, origin: Name, soa: Soa) -> bytes:
    """A NOTIFY (RFC 1996) that ``origin``'s SOA is now ``soa``: AA, the SOA in answer."""
    buffer = DNSBuffer()
    buffer.names = _PointableNames()
    header = DNSHeader(id=message_id, bitmap=0, q=1, a=1, opcode=Opcode.NOTIFY, aa=1)
    header.pack(buffer)
    DNSQuestion(DNSLabel(origin), RecordType.SOA, CLASS_IN).pack(buffer)
    _to_rr(Record(owner=origin, ttl=soa.minimum, data=soa)).pack(buffer)
    return bytes(buffer.data)


class _PointableNames(dict[tuple[bytes, ...], int]):
    """dnslib's name-compression table, keeping only offsets a pointer can reach.

    A compression pointer holds 14 bits of offset; dnslib would otherwise write a
    corrupt pointer to a name first written past 16383 bytes (large TCP replies).
    """

    def __setitem__(self, name: tuple[bytes, ...], offset: int) -> None:
        if offset <= _MAX_POINTER_OFFSET:
            super().__setitem__(name, offset)


def read_question(data: bytes) -> Question | None:
    """The first question of ``data`` when it can be read, to echo it in an error reply."""
    header = parse_header(data)
    if header is None or header.qdcount < 1:
        return None
    buffer = DNSBuffer(data)
    buffer.offset = HEADER_SIZE
    try:
        return _question(DNSQuestion.parse(buffer))
    except Exception:
        return None


def _question(question: DNSQuestion) -> Question:
    name: Name = tuple(bytes(label) for label in question.qname.label)
    wire_length = sum(len(label) + 1 for label in name) + 1
    if any(len(label) > _MAX_LABEL_LENGTH for label in name):
        raise FormError("a label of the question name is longer than 63 bytes")
    if wire_length > _MAX_NAME_WIRE_LENGTH:
        raise FormError(f"the question name is {wire_length} bytes long, over 255")
    return Question(name=name, qtype=question.qtype, qclass=question.qclass)


def _edns(additional: list[RR], question: Question) -> Edns | None:
    options = [rr for rr in additional if rr.rtype == RecordType.OPT]
    if not options:
        return None
    if len(options) > 1:
        raise FormError(f"{len(options)} OPT records; at most one is allowed", question=question)
    opt = options[0]
    if opt.rname.label:
        raise FormError(f"the OPT record is owned by {opt.rname}, not the root", question=question)
    return Edns(payload=opt.edns_len, version=opt.edns_ver, dnssec_ok=bool(opt.edns_do))


def _pack_opt(response: Response) -> bytes:
    opt = EDNS0(udp_len=response.edns_payload, ext_rcode=response.rcode >> 4, version=0)
    buffer = DNSBuffer()
    opt.pack(buffer)
    return bytes(buffer.data)


def _section_counts(kept: int, sections: tuple[tuple[Record, ...], ...]) -> tuple[int, int, int]:
    counts = []
    for section in sections:
        taken = min(kept, len(section))
        counts.append(taken)
        kept -= taken
    return counts[0], counts[1], counts[2]


def _to_rr(record: Record) -> RR:
    return RR(
        rname=DNSLabel(record.owner),
        rtype=record.rtype,
        rclass=record.rclass,
        ttl=record.ttl,
        rdata=_to_rdata(record.data),
    )


def _to_rdata(data: RecordData) -> A | AAAA | NS | SOA | PTR | SRV | CNAME | MX | TXT:
    if isinstance(data, IPv4Address):
        return A(tuple(data.packed))
    if isinstance(data, IPv6Address):
        return AAAA(tuple(data.packed))
    if isinstance(data, Srv):
        # dnslib writes SRV targets uncompressed, as RFC 2782 asks.
        return SRV(data.priority, data.weight, data.port, DNSLabel(data.target))
    if isinstance(data, Ptr):
        return PTR(DNSLabel(data.target))
    if isinstance(data, Ns):
        return NS(DNSLabel(data.target))
    if isinstance(data, Soa):
        times = (data.serial, data.refresh, data.retry, data.expire, data.minimum)
        return SOA(DNSLabel(data.mname), DNSLabel(data.rname), times)
    if isinstance(data, Cname):
        return CNAME(DNSLabel(data.target))
    if isinstance(data, Mx):
        return MX(DNSLabel(data.exchange), data.preference)
    if isinstance(data, Txt):
        return TXT(list(data.strings))
    raise DnsError(f"cannot encode record data of type {type(data).__name__}")
