"""The zone as a lookup reads it: one mesh's names, their records, and its addresses.

A :class:`Zone` is what :mod:`dnsserver.lookup` answers from; the tables it is made of
are built in :mod:`dnsserver.tables`, and which zone a client gets is decided in
:mod:`dnsserver.views`. The names of addresses (``<hex>.addr`` and the reverse names)
are not tables of records: there is one per address, so at 100,000 endpoints they were
most of a build's time and memory. An index of address -> services holds what they
answer, and a lookup makes the records when asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from immutables import Map

from dnsserver import names
from dnsserver.config import ZoneConfig
from dnsserver.records import (
    Name,
    Ptr,
    Record,
    RecordData,
    RecordType,
    Soa,
    name_from_text,
    record_type,
)
from registry.snapshot import IPAddress

# Secondaries (--allow-transfer) are told of changes by NOTIFY; these timers are only
# their fallback, RFC 1912 (2.2)'s suggested values.
_SOA_REFRESH = 3600
_SOA_RETRY = 600
_SOA_EXPIRE = 86400


@dataclass(frozen=True, slots=True)
class RRset:
    """The records of one name and type; the owner is filled in when answering."""

    ttl: int
    items: tuple[RecordData, ...]
    # Answer in a random rotation, so clients that take the first address spread out.
    rotate: bool = False
    # Records for the additional section (the addresses of SRV targets) and, per item,
    # the index of its first additional record, so a rotation keeps both aligned.
    additional: tuple[Record, ...] = ()
    additional_index: tuple[int, ...] = ()


# The RRsets of one name by type; empty for an empty non-terminal.
Node = Mapping[RecordType, RRset]
EMPTY_NODE: Node = Map()


@dataclass(frozen=True, slots=True)
class Zone:
    """One mesh's view of the zone, as a lookup reads it.

    ``nodes`` holds every existing name, relative to ``origin`` and case-folded;
    ``()`` is the apex (its SOA is ``soa``, not in the table). ``reverse`` holds the
    absolute ``in-addr.arpa``/``ip6.arpa`` names of the mesh's addresses, the only
    names outside the zone answered from it.
    """

    origin: Name
    soa: Soa
    negative_ttl: int
    nodes: Mapping[Name, Node]
    # The mesh's addresses (VIPs, endpoints) and, for each, its services with the TTL
    # of their PTR records; ``<hex>.addr`` and reverse names answer from it.
    addresses: Mapping[IPAddress, Mapping[str, int]]
    address_ttl: int


def zone_origin(config: ZoneConfig) -> Name:
    return name_from_text(config.domain.lower())


def zone_soa(config: ZoneConfig, revision: int) -> Soa:
    origin = zone_origin(config)
    return Soa(
        mname=names.NS_NAME + origin,
        rname=names.HOSTMASTER_NAME + origin,
        # Serials are 32-bit and compared in sequence-space arithmetic (RFC 1982).
        serial=revision & 0xFFFFFFFF,
        refresh=_SOA_REFRESH,
        retry=_SOA_RETRY,
        expire=_SOA_EXPIRE,
        minimum=config.negative_ttl,
    )


def address_node(zone: Zone, address: IPAddress) -> Node | None:
    """The records of ``<hex>.addr`` for ``address``; None when the mesh has no such address."""
    if address not in zone.addresses:
        return None
    return Map({record_type(address): RRset(zone.address_ttl, (address,))})


def pointer_node(zone: Zone, address: IPAddress) -> Node | None:
    """The PTR records of ``address``'s reverse name: every service there, the shortest
    TTL of theirs; None when the mesh has no such address."""
    services = zone.addresses.get(address)
    if not services:
        return None
    targets = tuple(
        Ptr(target=name + zone.origin)
        for service in sorted(services)
        if (name := names.service_name(service)) is not None
    )
    return Map({RecordType.PTR: RRset(min(services.values()), targets)})
