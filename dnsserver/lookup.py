"""Zone lookup: what a question finds in a zone, as a result plus sections.

Only the handler turns an :class:`Answer` into a reply (as CoreDNS's file plugin
does), so the rcode, flags and EDNS live in one place.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dnsserver.records import Name, Ns, Record, RecordType, fold_case
from dnsserver.zone import Node, RRset, Zone


class Result(enum.Enum):
    """What a lookup found."""

    SUCCESS = enum.auto()
    # The name does not exist in the zone.
    NXDOMAIN = enum.auto()
    # The name exists, with no records of the asked type.
    NODATA = enum.auto()
    # We will not answer this question from the zone (zone transfers).
    REFUSED = enum.auto()
    # The name is not in our zone. The seam for forwarding to upstream resolvers;
    # until then the handler refuses it.
    OUTSIDE_ZONE = enum.auto()


@dataclass(frozen=True, slots=True)
class Answer:
    """A lookup's result and the records of each reply section."""

    result: Result
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()


# RFC 8482: ANY gets one RRset of the name, the first of these it has.
_ANY_PREFERENCE = (RecordType.SOA, RecordType.A, RecordType.AAAA, RecordType.NS)
_ZONE_TRANSFERS = (RecordType.AXFR, RecordType.IXFR)
_ADDRESS_TYPES = (RecordType.A, RecordType.AAAA)


def lookup(zone: Zone, qname: Name, qtype: int) -> Answer:
    """Look ``qname`` (as asked, any case) up in ``zone`` for records of ``qtype``.

    Answer records are owned by ``qname`` exactly as asked, so clients see the case
    they used. ANY is answered minimally (RFC 8482): the first RRset the name has of
    SOA, A, AAAA, NS; a name without records answers NODATA, rather than a
    synthesised HINFO, because NODATA is what the zone really holds.
    """
    relative = _relative_name(zone, fold_case(qname))
    if relative is None:
        return Answer(Result.OUTSIDE_ZONE)
    if qtype in _ZONE_TRANSFERS:
        return Answer(Result.REFUSED)
    node = zone.nodes.get(relative)
    if node is None:
        return Answer(Result.NXDOMAIN, authority=(_negative_soa(zone),))
    rtype, rrset = _find_rrset(node, qtype)
    if rrset is None:
        return Answer(Result.NODATA, authority=(_negative_soa(zone),))
    answer = _records(qname, rrset)
    additional = _glue(zone, rrset) if rtype == RecordType.NS else ()
    return Answer(Result.SUCCESS, answer=answer, additional=additional)


def _relative_name(zone: Zone, name: Name) -> Name | None:
    """``name`` relative to the zone's origin; None when it is outside the zone."""
    depth = len(name) - len(zone.origin)
    if depth < 0 or name[depth:] != zone.origin:
        return None
    return name[:depth]


def _find_rrset(node: Node, qtype: int) -> tuple[int, RRset | None]:
    if qtype == RecordType.ANY:
        for rtype in _ANY_PREFERENCE:
            if rtype in node:
                return rtype, node[rtype]
        return qtype, None
    try:
        rtype = RecordType(qtype)
    except ValueError:
        return qtype, None
    return rtype, node.get(rtype)


def _records(owner: Name, rrset: RRset) -> tuple[Record, ...]:
    return tuple(Record(owner=owner, ttl=rrset.ttl, data=item) for item in rrset.items)


def _negative_soa(zone: Zone) -> Record:
    # The SOA's own TTL caps the negative-cache time too (RFC 2308 section 5).
    return Record(owner=zone.origin, ttl=zone.negative_ttl, data=zone.soa)


def _glue(zone: Zone, ns_rrset: RRset) -> tuple[Record, ...]:
    """The addresses of in-zone NS targets, for the additional section."""
    glue: list[Record] = []
    for item in ns_rrset.items:
        if not isinstance(item, Ns):
            continue
        relative = _relative_name(zone, item.target)
        node = zone.nodes.get(relative, {}) if relative is not None else {}
        for rtype in _ADDRESS_TYPES:
            if rtype in node:
                glue.extend(_records(item.target, node[rtype]))
    return tuple(glue)
