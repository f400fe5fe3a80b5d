"""Zone lookup: what a question finds in a zone, as a result plus sections.

Only the handler turns an :class:`Answer` into a reply (as CoreDNS's file plugin
does), so the rcode, flags and EDNS live in one place.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from immutables import Map

from dnsserver import names
from dnsserver.records import Name, Ns, Record, RecordType, fold_case
from dnsserver.zone import Node, RRset, Zone, domain_node, origin_of, pointer_node


class Result(enum.Enum):
    """What a lookup found."""

    SUCCESS = enum.auto()
    # The name does not exist in the zone.
    NXDOMAIN = enum.auto()
    # The name exists, with no records of the asked type.
    NODATA = enum.auto()
    # We will not answer this question from the zone: a transfer asked by a client that
    # may not transfer it (the handler answers allowed transfers itself).
    REFUSED = enum.auto()
    # The name is not in our zone: the handler forwards it upstream for clients allowed
    # to recurse, and refuses it for everyone else.
    OUTSIDE_ZONE = enum.auto()


@dataclass(frozen=True, slots=True)
class Answer:
    """A lookup's result and the records of each reply section."""

    result: Result
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    # The records come in a random rotation: another lookup may order them otherwise.
    rotated: bool = False


# RFC 8482: ANY gets one RRset of the name, the first of these it has.
_ANY_PREFERENCE = (
    RecordType.SOA,
    RecordType.A,
    RecordType.AAAA,
    RecordType.SRV,
    RecordType.PTR,
    RecordType.NS,
)
_ZONE_TRANSFERS = (RecordType.AXFR, RecordType.IXFR)
_ADDRESS_TYPES = (RecordType.A, RecordType.AAAA)


def lookup(zone: Zone, qname: Name, qtype: int) -> Answer:
    """Look ``qname`` (as asked, any case) up in ``zone`` for records of ``qtype``.

    Answer records are owned by ``qname`` exactly as asked, so clients see the case
    they used. ANY is answered minimally (RFC 8482): the first RRset the name has of
    SOA, A, AAAA, SRV, PTR, NS; a name without records answers NODATA, rather than a
    synthesised HINFO, because NODATA is what the zone really holds. Endpoint sets
    come in a random rotation; SRV answers carry their targets' addresses as
    additional records.

    A name is answered in the zone of the longest origin it is under: ``--domain``'s
    (legacy names first, then destinations' names there) or a hostname zone's; each
    zone has its SOA and NS at its apex and denies with its SOA. Outside every zone, the
    reverse names of the mesh's addresses answer PTR (and ANY); any other question there
    is OUTSIDE_ZONE, for the handler to forward or refuse.
    """
    folded = fold_case(qname)
    origin = origin_of(folded, zone.origin, zone.hostname_origins)
    if origin is None:
        return _reverse_lookup(zone, folded, qname, qtype)
    if qtype in _ZONE_TRANSFERS:
        return Answer(Result.REFUSED)
    relative = folded[: len(folded) - len(origin)]
    if origin == zone.origin:
        node = domain_node(zone, relative)
    else:
        # A hostname zone's apex has the server's NS, as --domain's has.
        node = zone.nodes.get(()) if not relative else zone.hostnames.get(folded)
    if node is None:
        return Answer(Result.NXDOMAIN, authority=(_negative_soa(zone, origin),))
    if not relative:
        node = _with_soa(zone, node)
    rtype, rrset = _find_rrset(node, qtype)
    if rrset is None:
        return Answer(Result.NODATA, authority=(_negative_soa(zone, origin),))
    if rtype == RecordType.NS:
        return Answer(Result.SUCCESS, answer=_records(qname, rrset), additional=_glue(zone, rrset))
    answer, additional = _answer(qname, rrset)
    rotated = rrset.rotate and len(rrset.items) > 1
    return Answer(Result.SUCCESS, answer=answer, additional=additional, rotated=rotated)


def _reverse_lookup(zone: Zone, folded: Name, qname: Name, qtype: int) -> Answer:
    # We hold these names, not their zone: a question of another type at them goes
    # where any other outside name goes, since we have no SOA to deny it with.
    address = names.address_of_reverse_name(folded)
    node = pointer_node(zone, address) if address is not None else None
    rrset = node.get(RecordType.PTR) if node is not None else None
    if rrset is None or qtype not in (RecordType.PTR, RecordType.ANY):
        return Answer(Result.OUTSIDE_ZONE)
    return Answer(Result.SUCCESS, answer=_records(qname, rrset))


def _relative_name(zone: Zone, name: Name) -> Name | None:
    """``name`` relative to ``--domain``; None when it is outside that zone."""
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


def _answer(owner: Name, rrset: RRset) -> tuple[tuple[Record, ...], tuple[Record, ...]]:
    """The answer and additional records of ``rrset``, rotated when it asks for it.

    A rotation (not a full shuffle) of records built once: every record gets its turn
    first, and a truncated answer still starts with whole, aligned pairs of SRV
    records and their addresses.
    """
    items = rrset.items
    additional = rrset.additional
    if rrset.rotate and len(items) > 1:
        start = random.randrange(len(items))
        items = items[start:] + items[:start]
        if additional:
            cut = rrset.additional_index[start]
            additional = additional[cut:] + additional[:cut]
    answer = tuple(Record(owner=owner, ttl=rrset.ttl, data=item) for item in items)
    return answer, additional


def _with_soa(zone: Zone, apex: Node) -> Node:
    # The SOA carries the snapshot's revision, so it is kept out of the mesh tables:
    # a new revision would otherwise touch every mesh.
    soa = RRset(zone.negative_ttl, (zone.soa,))
    return Map(apex).set(RecordType.SOA, soa)


def _negative_soa(zone: Zone, origin: Name) -> Record:
    # The SOA's own TTL caps the negative-cache time too (RFC 2308 section 5).
    return Record(owner=origin, ttl=zone.negative_ttl, data=zone.soa)


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
