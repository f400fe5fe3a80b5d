"""DNS names and resource records as plain values, independent of any wire library."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address

# A domain name as its labels, most specific first, without the empty root label:
# ``(b"backend", b"mesh")`` is ``backend.mesh.``. Bytes, because DNS labels are
# bytes and compare case-insensitively only over ASCII.
Name = tuple[bytes, ...]


def name_from_text(text: str) -> Name:
    """Split a dotted ASCII name such as ``"backend.mesh."`` into its labels."""
    stripped = text.strip(".")
    return tuple(label.encode("ascii") for label in stripped.split(".")) if stripped else ()


def fold_case(name: Name) -> Name:
    """The name's lookup key: DNS compares names case-insensitively (ASCII only)."""
    return tuple(label.lower() for label in name)


class RecordType(IntEnum):
    """The record and query types this server knows by name (RFC 1035, 3596, 2782, 1995, 8482)."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    IXFR = 251
    AXFR = 252
    ANY = 255


@dataclass(frozen=True, slots=True)
class Question:
    """A question exactly as asked: the name keeps the client's case."""

    name: Name
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class Soa:
    """The data of an SOA record."""

    mname: Name
    rname: Name
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True, slots=True)
class Ns:
    """The data of an NS record: the name server's name."""

    target: Name


@dataclass(frozen=True, slots=True)
class Ptr:
    """The data of a PTR record: the name an address points back to."""

    target: Name


@dataclass(frozen=True, slots=True)
class Srv:
    """The data of an SRV record (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: Name


@dataclass(frozen=True, slots=True)
class Cname:
    """The data of a CNAME record; only upstream answers carry these."""

    target: Name


@dataclass(frozen=True, slots=True)
class Mx:
    """The data of an MX record; only upstream answers carry these."""

    preference: int
    exchange: Name


@dataclass(frozen=True, slots=True)
class Txt:
    """The data of a TXT record: its character-strings; only upstream answers carry these."""

    strings: tuple[bytes, ...]


RecordData = IPv4Address | IPv6Address | Soa | Ns | Ptr | Srv | Cname | Mx | Txt

_DATA_TYPES: dict[type, RecordType] = {
    IPv4Address: RecordType.A,
    IPv6Address: RecordType.AAAA,
    Soa: RecordType.SOA,
    Ns: RecordType.NS,
    Ptr: RecordType.PTR,
    Srv: RecordType.SRV,
    Cname: RecordType.CNAME,
    Mx: RecordType.MX,
    Txt: RecordType.TXT,
}


def record_type(data: RecordData) -> RecordType:
    """The type of the record that carries ``data``."""
    return _DATA_TYPES[type(data)]


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record: of class IN, but for the server's own CH identity."""

    owner: Name
    ttl: int
    data: RecordData
    rclass: int = 1

    @property
    def rtype(self) -> RecordType:
        return record_type(self.data)
