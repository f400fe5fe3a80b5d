"""A mesh's zone as a whole: its records in transfer order, and as an RFC 1035 zone file.

What a secondary (NSD, Knot, BIND) needs to answer the zone as meshdns does for one
mesh: the SOA, the NS and its glue, and every name's records (VIPs, endpoints, SRV,
``<hex>.addr`` names, dotted aliases, destinations' hostnames that fall in it). Reverse
names are left out: they belong to the ``in-addr.arpa``/``ip6.arpa`` zones, not to
``mesh.``; so are the hostname zones (``svc.mesh.local``...), which are not
transferred. Rotations are the secondary's business; the records come in the order they
are held.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from dnsserver import names
from dnsserver.records import Name, Ns, Ptr, Record, RecordData, RecordType, Soa, Srv
from dnsserver.zone import Zone, domain_node, origin_of

# The order records of one name are listed in, for a stable file.
_TYPE_ORDER = (RecordType.SOA, RecordType.NS, RecordType.A, RecordType.AAAA, RecordType.SRV)


def zone_records(zone: Zone) -> list[Record]:
    """Every record of ``zone``, the SOA first (but not repeated last)."""
    soa = Record(owner=zone.origin, ttl=zone.negative_ttl, data=zone.soa)
    records = [soa]
    # <hex>.addr names are answered from the address indexes, not held as nodes.
    address_names = {
        names.addr_name(address)
        for addresses in (zone.addresses, zone.destination_addresses)
        for address in addresses
    }
    origin = zone.origin
    hostnames = {
        name[: len(name) - len(origin)]
        for name in zone.hostnames
        if origin_of(name, origin, zone.hostname_origins) == origin
    }
    for relative in sorted({*zone.nodes.keys(), *hostnames, *address_names}):
        owner = relative + origin
        node = domain_node(zone, relative) or {}
        for rtype in sorted(node, key=_type_rank):
            rrset = node[rtype]
            records.extend(Record(owner=owner, ttl=rrset.ttl, data=item) for item in rrset.items)
    return records


def _type_rank(rtype: RecordType) -> tuple[int, int]:
    return (_TYPE_ORDER.index(rtype) if rtype in _TYPE_ORDER else len(_TYPE_ORDER), rtype)


def render(records: list[Record], origin: Name) -> str:
    """``records`` as a zone file (RFC 1035 section 5), one record a line, names absolute."""
    lines = [f"$ORIGIN {name_text(origin)}"]
    lines += [
        f"{name_text(record.owner)}\t{record.ttl}\tIN\t{record.rtype.name}\t{_data_text(record.data)}"
        for record in records
    ]
    return "\n".join(lines) + "\n"


def name_text(name: Name) -> str:
    """An absolute name in master-file syntax: bytes other than letters, digits, ``-``
    and ``_`` are escaped (``\\DDD``)."""
    if not name:
        return "."
    return "".join(_label_text(label) + "." for label in name)


def _label_text(label: bytes) -> str:
    return "".join(
        chr(byte) if chr(byte).isalnum() and byte < 0x80 or byte in b"-_" else f"\\{byte:03d}"
        for byte in label
    )


def _data_text(data: RecordData) -> str:
    if isinstance(data, IPv4Address | IPv6Address):
        return str(data)
    if isinstance(data, Soa):
        return (
            f"{name_text(data.mname)} {name_text(data.rname)} {data.serial} {data.refresh} "
            f"{data.retry} {data.expire} {data.minimum}"
        )
    if isinstance(data, Ns | Ptr):
        return name_text(data.target)
    if isinstance(data, Srv):
        return f"{data.priority} {data.weight} {data.port} {name_text(data.target)}"
    raise ValueError(f"no zone-file form for {type(data).__name__} in the mesh zone")
