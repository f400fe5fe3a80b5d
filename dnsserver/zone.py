"""Zone tables: the records of each mesh's view of the zone, built once per snapshot."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from dnsserver import names
from dnsserver.config import ZoneConfig
from dnsserver.records import Name, Ns, RecordData, RecordType, Soa, name_from_text, record_type
from registry.snapshot import IPAddress, MeshView, ServiceView, Snapshot

logger = logging.getLogger("meshdns.dns")

# We serve no zone transfers, so these only need to be plausible (RFC 1912 2.2).
_SOA_REFRESH = 3600
_SOA_RETRY = 600
_SOA_EXPIRE = 86400


@dataclass(frozen=True, slots=True)
class RRset:
    """The records of one name and type; the owner is filled in when answering."""

    ttl: int
    items: tuple[RecordData, ...]


# The RRsets of one name by type; empty for an empty non-terminal.
Node = Mapping[RecordType, RRset]


@dataclass(frozen=True, slots=True)
class Zone:
    """One mesh's view of the zone.

    ``nodes`` holds every existing name, relative to ``origin`` and case-folded;
    ``()`` is the apex. Names that exist only because names below them do (such
    as ``endpoints``) are there with no RRsets.
    """

    origin: Name
    soa: Soa
    negative_ttl: int
    nodes: Mapping[Name, Node]


@dataclass(frozen=True, slots=True)
class Zones:
    """Every mesh's zone and how to pick the one a client is answered from."""

    by_mesh: Mapping[str, Zone]
    # Answered to clients whose mesh does not exist: the apex and nothing else.
    empty: Zone
    client_meshes: Mapping[IPAddress, str]
    default_mesh: str

    def zone_for(self, client: IPAddress) -> Zone:
        """The zone of the client's mesh, else of the default mesh."""
        mesh = self.client_meshes.get(client, self.default_mesh)
        return self.by_mesh.get(mesh, self.empty)


def build_zones(config: ZoneConfig, snapshot: Snapshot) -> Zones:
    """Build every mesh's zone from ``snapshot``."""
    return Zones(
        by_mesh=MappingProxyType(
            {
                name: build_zone(config, mesh, snapshot.revision)
                for name, mesh in snapshot.meshes.items()
            }
        ),
        empty=build_zone(config, None, snapshot.revision),
        client_meshes=snapshot.dataplane_meshes,
        default_mesh=config.default_mesh,
    )


def build_zone(config: ZoneConfig, mesh: MeshView | None, revision: int) -> Zone:
    """Build the zone as seen from ``mesh`` (None: the apex only)."""
    origin = name_from_text(config.domain.lower())
    nodes: dict[Name, dict[RecordType, RRset]] = {}
    soa = Soa(
        mname=names.NS_NAME + origin,
        rname=names.HOSTMASTER_NAME + origin,
        # Serials are 32-bit and compared in sequence-space arithmetic (RFC 1982).
        serial=revision & 0xFFFFFFFF,
        refresh=_SOA_REFRESH,
        retry=_SOA_RETRY,
        expire=_SOA_EXPIRE,
        minimum=config.negative_ttl,
    )
    # RFC 2308: resolvers cache a negative answer for min(SOA TTL, minimum).
    _add(nodes, (), config.negative_ttl, [soa])
    _add(nodes, (), config.ttl, [Ns(target=names.NS_NAME + origin)])
    # ns.<domain> always exists as the NS target, so no service can take its name.
    nodes.setdefault(names.NS_NAME, {})
    if config.ns_address is not None:
        _add(nodes, names.NS_NAME, config.ttl, [config.ns_address])

    services = sorted(mesh.services.values(), key=lambda s: s.name) if mesh else []
    for service in services:
        _add_service(nodes, config, service)
    # Aliases last, so that a real name always wins over an alias that collides with it.
    for service in services:
        alias = names.dotted_alias(service.name)
        if alias is not None and alias not in nodes:
            _add(nodes, alias, config.ttl, _vips(service))

    _add_empty_non_terminals(nodes)
    return Zone(
        origin=origin,
        soa=soa,
        negative_ttl=config.negative_ttl,
        nodes=MappingProxyType({name: MappingProxyType(node) for name, node in nodes.items()}),
    )


def _add_service(
    nodes: dict[Name, dict[RecordType, RRset]], config: ZoneConfig, service: ServiceView
) -> None:
    vip_name = names.service_name(service.name)
    endpoints_name = names.endpoints_name(service.name)
    if vip_name is None or endpoints_name is None:
        logger.debug("service %r has no DNS name: not a valid DNS label", service.name)
        return
    if vip_name in nodes:
        # Names fold case, so "Web" and "web" collide; the first by sort order wins.
        logger.debug("service %r: its name %r is already taken", service.name, vip_name)
        return
    _add(nodes, vip_name, config.ttl, _vips(service))
    # dict.fromkeys: one record per address, in endpoint order.
    addresses = list(dict.fromkeys(endpoint.address for endpoint in service.ready_endpoints))
    _add(nodes, endpoints_name, config.endpoints_ttl, addresses)


def _vips(service: ServiceView) -> Sequence[RecordData]:
    return [vip for vip in (service.vip, service.vip6) if vip is not None]


def _add(
    nodes: dict[Name, dict[RecordType, RRset]], name: Name, ttl: int, items: Sequence[RecordData]
) -> None:
    """Add ``items`` to ``name``'s RRsets; the name exists even when ``items`` is empty."""
    node = nodes.setdefault(name, {})
    for rtype in dict.fromkeys(record_type(item) for item in items):
        of_type = tuple(item for item in items if record_type(item) == rtype)
        existing = node.get(rtype)
        node[rtype] = RRset(ttl, existing.items + of_type) if existing else RRset(ttl, of_type)


def _add_empty_non_terminals(nodes: dict[Name, dict[RecordType, RRset]]) -> None:
    # Every name between an existing name and the apex exists (RFC 8020): for
    # service a_b_c, b.c answers NODATA, not NXDOMAIN.
    for name in list(nodes):
        for start in range(1, len(name)):
            nodes.setdefault(name[start:], {})
