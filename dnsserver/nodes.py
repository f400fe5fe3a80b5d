"""Nodes made from records, as the zone tables hold them: one RRset per type, SRV records
with their targets' addresses alongside."""

from __future__ import annotations

from collections.abc import Iterable

from immutables import Map

from dnsserver import names
from dnsserver.records import Name, Record, RecordData, RecordType, Srv, record_type
from dnsserver.zone import EMPTY_NODE, Node, RRset
from registry.snapshot import IPAddress

# SRV (RFC 2782): local endpoints first, then cross-zone ones (another zone's ingress,
# or this zone's egress); equal weights, so clients spread evenly.
SRV_LOCAL_PRIORITY = 0
SRV_REMOTE_PRIORITY = 1
SRV_WEIGHT = 1

# One SRV target: (priority, where, port). ``where`` is an address, answered as
# ``<hex>.addr.<domain>`` with the address in the additional section, or a name given
# as it is (a MeshExternalService endpoint known by name).
SrvTarget = tuple[int, IPAddress | Name, int]


def node(ttl: int, items: Iterable[RecordData], *, rotate: bool = False) -> Node:
    """A node of ``items``, one RRset per type, in the order given."""
    by_type: dict[RecordType, list[RecordData]] = {}
    for item in items:
        by_type.setdefault(record_type(item), []).append(item)
    return Map({rtype: RRset(ttl, tuple(of_type), rotate) for rtype, of_type in by_type.items()})


def srv_node(ttl: int, domain: Name, targets: Iterable[SrvTarget]) -> Node:
    """SRV records of ``targets``, in a rotation; one per target and port, the first.

    Address targets are named under ``domain`` (the zone ``<hex>.addr`` names are in).
    """
    first: dict[tuple[IPAddress | Name, int], int] = {}
    for priority, where, port in targets:
        first.setdefault((where, port), priority)
    items: list[RecordData] = []
    additional: list[Record] = []
    first_additional: dict[IPAddress, int] = {}
    index: list[int] = []
    for (where, port), priority in first.items():
        if isinstance(where, tuple):
            items.append(Srv(priority, SRV_WEIGHT, port, where))
            # No address of ours to add: a rotation starting here starts the additional
            # records at the next target's.
            index.append(len(additional))
            continue
        target = names.addr_name(where) + domain
        items.append(Srv(priority, SRV_WEIGHT, port, target))
        if where not in first_additional:
            first_additional[where] = len(additional)
            additional.append(Record(owner=target, ttl=ttl, data=where))
        index.append(first_additional[where])
    rrset = RRset(
        ttl, tuple(items), rotate=True, additional=tuple(additional), additional_index=tuple(index)
    )
    return Map({RecordType.SRV: rrset}) if items else EMPTY_NODE
