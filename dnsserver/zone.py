"""The zones as a lookup reads them: one mesh's names, their records, and its addresses.

A :class:`Zone` is what :mod:`dnsserver.lookup` answers from; the tables it is made of
are built in :mod:`dnsserver.tables` (the legacy names under ``--domain``) and
:mod:`dnsserver.destinations` (MeshServices and their kin, under their hostnames'
zones), and which zone a client gets is decided in :mod:`dnsserver.views`. The names
of addresses (``<hex>.addr`` and the reverse names) are not tables of records: there is
one per address, so at 100,000 endpoints they were most of a build's time and memory.
Indexes of address -> services (and destinations) hold what they answer, and a lookup
makes the records when asked.
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
class AddressNames:
    """What one destination's address answers in PTR: its hostnames (absolute; none at
    an endpoint's address), with the TTL of those records."""

    ttl: int
    targets: tuple[Name, ...] = ()


_NO_NODES: Mapping[Name, Node] = Map()
_NO_ADDRESSES: Mapping[IPAddress, Mapping[str, AddressNames]] = Map()


@dataclass(frozen=True, slots=True)
class Zone:
    """One mesh's view of the zones, as a lookup reads it.

    ``nodes`` holds every existing legacy name, relative to ``origin`` (``--domain``)
    and case-folded; ``()`` is the apex (its SOA is ``soa``, not in the table). The
    zones of ``hostname_origins`` answer the destinations' names, held in
    ``hostnames`` by absolute name; every zone has the same SOA data and NS. A name
    belongs to the longest origin it is under (:func:`origin_of`). The reverse names of
    the mesh's addresses are the only names outside the zones answered from it.
    """

    origin: Name
    soa: Soa
    negative_ttl: int
    nodes: Mapping[Name, Node]
    # The mesh's legacy addresses (VIPs, endpoints) and, for each, its services with
    # the TTL of their PTR records; ``<hex>.addr`` and reverse names answer from it.
    addresses: Mapping[IPAddress, Mapping[str, int]]
    address_ttl: int
    hostname_origins: frozenset[Name] = frozenset()
    hostnames: Mapping[Name, Node] = _NO_NODES
    # The destinations' addresses (VIPs, endpoints), by destination key: they answer
    # ``<hex>.addr`` too, and a VIP's reverse name gives the hostnames.
    destination_addresses: Mapping[IPAddress, Mapping[str, AddressNames]] = _NO_ADDRESSES


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


def origin_of(name: Name, domain: Name, hostname_origins: frozenset[Name]) -> Name | None:
    """The origin of the zone ``name`` (folded, absolute) is in, of ``domain`` and the
    ``hostname_origins``: the longest one it is under, so that ``redis.svc.mesh.local``
    is in ``svc.mesh.local``, not ``mesh.local``; None when it is in none of them."""
    if not hostname_origins:
        depth = len(name) - len(domain)
        return domain if depth >= 0 and name[depth:] == domain else None
    for start in range(len(name) + 1):
        suffix = name[start:]
        if suffix == domain or suffix in hostname_origins:
            return suffix
    return None


def domain_node(zone: Zone, relative: Name) -> Node | None:
    """The records of a name in ``--domain``'s zone (relative, folded): its legacy name's,
    else a destination's name there, else an ``<hex>.addr`` name's; None when none is."""
    node = zone.nodes.get(relative)
    if not node:
        # An empty non-terminal of the legacy names may be a destination's name.
        node = zone.hostnames.get(relative + zone.origin, node)
    if node is None:
        address = names.address_of_addr_name(relative)
        node = address_node(zone, address) if address is not None else None
    return node


def address_node(zone: Zone, address: IPAddress) -> Node | None:
    """The records of ``<hex>.addr`` for ``address``; None when the mesh has no such address."""
    if address not in zone.addresses and address not in zone.destination_addresses:
        return None
    return Map({record_type(address): RRset(zone.address_ttl, (address,))})


def pointer_node(zone: Zone, address: IPAddress) -> Node | None:
    """The PTR records of ``address``'s reverse name: every service there, then every
    destination's hostnames there, the shortest TTL of theirs; None when nothing of the
    mesh names this address."""
    services = zone.addresses.get(address) or {}
    destinations = {
        key: names_there
        for key, names_there in (zone.destination_addresses.get(address) or {}).items()
        if names_there.targets
    }
    if not services and not destinations:
        return None
    targets = [
        Ptr(target=name + zone.origin)
        for service in sorted(services)
        if (name := names.service_name(service)) is not None
    ]
    targets += [
        Ptr(target=target) for key in sorted(destinations) for target in destinations[key].targets
    ]
    ttl = min([*services.values(), *(names_there.ttl for names_there in destinations.values())])
    return Map({RecordType.PTR: RRset(ttl, tuple(targets))})
