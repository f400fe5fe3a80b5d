"""Zone tables: each mesh's names, kept current one changed service at a time.

Every service *claims* the names it answers at (its VIP name, endpoints, SRV, its
dotted aliases), and needs the names above them to exist (empty non-terminals). A
name's records are merged from the claims on it alone, so a changed service only
touches its own names: applying it costs what the service holds, not what the
registry holds. The tables are persistent maps (:mod:`immutables`), so an update
makes new tables sharing all untouched entries with the old ones, and swapping them
in is one assignment.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from immutables import Map

from dnsserver import names
from dnsserver.config import ZoneConfig
from dnsserver.records import Name, Ns, Record, RecordData, RecordType, Srv, record_type
from dnsserver.zone import EMPTY_NODE, Node, RRset, zone_origin
from registry.snapshot import Endpoint, IPAddress, MeshView, ServiceView

logger = logging.getLogger("meshdns.dns")

# SRV (RFC 2782): local endpoints first, then cross-zone ones (another zone's ingress,
# or this zone's egress); equal weights, so clients spread evenly.
SRV_LOCAL_PRIORITY = 0
SRV_REMOTE_PRIORITY = 1
SRV_WEIGHT = 1


class _Kind(enum.Enum):
    """What a claim is; decides how claims on one name merge."""

    # A service's own names: on a collision (names fold case) the least service name wins.
    OWN = enum.auto()
    # Kuma's dotted aliases: only where no service has an own name.
    ALIAS = enum.auto()


@dataclass(frozen=True, slots=True)
class _Claim:
    kind: _Kind
    node: Node


# A table key: a name relative to the origin.
_Key = Name


@dataclass(frozen=True, slots=True)
class _ServiceClaims:
    """Everything one service put in the tables, so that it can be taken out again."""

    claims: tuple[tuple[_Key, _Claim], ...]
    # Names that exist because the service's names are below them (RFC 8020).
    ancestors: frozenset[Name]
    # The service's addresses, each with the TTL of the PTR naming the service there.
    addresses: tuple[tuple[IPAddress, int], ...] = ()


@dataclass(frozen=True, slots=True)
class MeshTables:
    """One mesh's tables: the answers, and the claims they are merged from."""

    nodes: Map[Name, Node]
    addresses: Map[IPAddress, Map[str, int]]
    claims: Map[_Key, Map[str, _Claim]]
    # How many services need each empty non-terminal.
    ancestors: Map[Name, int]
    services: Map[str, _ServiceClaims]

    def apply(
        self,
        config: ZoneConfig,
        changes: Iterable[tuple[str, ServiceView | None]],
        *,
        cross_zone: bool = False,
    ) -> MeshTables:
        """The tables with each named service replaced by its new view (None: gone).

        Endpoints of other zones are left out, unless ``cross_zone``: then they answer
        where the local ones do not (a client's variant, see :class:`Zones`).
        """
        origin = zone_origin(config)
        services = self.services.mutate()
        claims = self.claims.mutate()
        ancestors = self.ancestors.mutate()
        addresses = self.addresses.mutate()
        touched: set[_Key] = set()
        for name, view in changes:
            old = services.get(name)
            if old is not None:
                for key, _ in old.claims:
                    remaining = claims[key].delete(name)
                    if remaining:
                        claims[key] = remaining
                    else:
                        del claims[key]
                    touched.add(key)
                for ancestor in old.ancestors:
                    count = ancestors[ancestor] - 1
                    if count:
                        ancestors[ancestor] = count
                    else:
                        del ancestors[ancestor]
                    touched.add(ancestor)
                for address, _ in old.addresses:
                    remaining_services = addresses[address].delete(name)
                    if remaining_services:
                        addresses[address] = remaining_services
                    else:
                        del addresses[address]
                del services[name]
            new = (
                _service_claims(config, origin, view, cross_zone=cross_zone)
                if view is not None
                else None
            )
            if new is not None:
                for key, claim in new.claims:
                    claims[key] = claims.get(key, Map()).set(name, claim)
                    touched.add(key)
                for ancestor in new.ancestors:
                    ancestors[ancestor] = ancestors.get(ancestor, 0) + 1
                    touched.add(ancestor)
                for address, ttl in new.addresses:
                    addresses[address] = addresses.get(address, Map()).set(name, ttl)
                services[name] = new

        nodes = self.nodes.mutate()
        for owner in touched:
            if owner in _STATIC_NAMES:
                continue  # the apex and ns.<domain> are the server's own
            node = _merge(claims.get(owner))
            if node is None and owner in ancestors:
                node = EMPTY_NODE
            if node is None:
                nodes.pop(owner, None)
            else:
                nodes[owner] = node
        return MeshTables(
            nodes=nodes.finish(),
            addresses=addresses.finish(),
            claims=claims.finish(),
            ancestors=ancestors.finish(),
            services=services.finish(),
        )


def build_mesh(config: ZoneConfig, mesh: MeshView, empty: MeshTables | None = None) -> MeshTables:
    """The tables of ``mesh``: its services applied to the empty zone."""
    empty = empty or empty_tables(config)
    return empty.apply(config, sorted(mesh.services.items()))


_STATIC_NAMES = ((), names.NS_NAME)


def empty_tables(config: ZoneConfig) -> MeshTables:
    """The apex (NS; the SOA is added when answering) and ns.<domain>, nothing else."""
    origin = zone_origin(config)
    ns_node: Node = _node(config.ttl, [config.ns_address] if config.ns_address else [])
    apex: Node = _node(config.ttl, [Ns(target=names.NS_NAME + origin)])
    return MeshTables(
        nodes=Map({(): apex, names.NS_NAME: ns_node}),
        addresses=Map(),
        claims=Map(),
        ancestors=Map(),
        services=Map(),
    )


def _service_claims(
    config: ZoneConfig, origin: Name, service: ServiceView, *, cross_zone: bool = False
) -> _ServiceClaims:
    vip_name = names.service_name(service.name)
    endpoints_name = names.endpoints_name(service.name)
    if vip_name is None or endpoints_name is None or vip_name in _STATIC_NAMES:
        logger.debug("service %r has no DNS name: not a valid DNS label", service.name)
        return _ServiceClaims(claims=(), ancestors=frozenset())
    claims: list[tuple[_Key, _Claim]] = []
    vips: list[RecordData] = [vip for vip in (service.vip, service.vip6) if vip is not None]
    vip_node = _node(config.ttl, vips)
    local = [endpoint for endpoint in service.endpoints if _is_local(config, endpoint)]
    ready = [endpoint for endpoint in local if endpoint.ready and endpoint.online]
    remote: list[Endpoint] = []
    if cross_zone:
        remote = [endpoint for endpoint in service.endpoints if not _is_local(config, endpoint)]
    remote_ready = [endpoint for endpoint in remote if endpoint.ready and endpoint.online]
    # dict.fromkeys: one record per address, in endpoint order. Other zones' ingresses
    # only when no endpoint here can take the traffic (DESIGN, "DNS names").
    addresses: list[RecordData] = list(
        dict.fromkeys(endpoint.address for endpoint in ready or remote_ready)
    )
    endpoints_node = _node(config.endpoints_ttl, addresses, rotate=True)

    claims.append((vip_name, _Claim(_Kind.OWN, vip_node)))
    claims.append((endpoints_name, _Claim(_Kind.OWN, endpoints_node)))
    srv_name = names.srv_name(service.name)
    if srv_name is not None:
        targets = [(SRV_LOCAL_PRIORITY, endpoint) for endpoint in ready]
        targets += [(SRV_REMOTE_PRIORITY, endpoint) for endpoint in remote_ready]
        claims.append((srv_name, _Claim(_Kind.OWN, _srv_node(config, origin, targets))))
    for alias, node in (
        (names.dotted_alias(service.name), vip_node),
        (names.dotted_endpoints_alias(service.name), endpoints_node),
    ):
        if alias is not None:
            claims.append((alias, _Claim(_Kind.ALIAS, node)))

    known: dict[IPAddress, int] = {vip: config.ttl for vip in (service.vip, service.vip6) if vip}
    for endpoint in local:
        known.setdefault(endpoint.address, config.endpoints_ttl)
    for endpoint in remote:
        known.setdefault(endpoint.address, config.endpoints_ttl)

    ancestors = {owner[start:] for owner, _ in claims for start in range(1, len(owner))}
    if known:
        ancestors.add((names.ADDR_LABEL,))
    return _ServiceClaims(
        claims=tuple(claims), ancestors=frozenset(ancestors), addresses=tuple(known.items())
    )


def _is_local(config: ZoneConfig, endpoint: Endpoint) -> bool:
    # Endpoints of other zones answer only in a variant for clients that may reach them.
    return endpoint.zone is None or endpoint.zone == config.local_zone


def _srv_node(config: ZoneConfig, origin: Name, ready: list[tuple[int, Endpoint]]) -> Node:
    """SRV records of ``ready`` (priority, endpoint); one per address and port, the first."""
    targets: dict[tuple[IPAddress, int], int] = {}
    for priority, endpoint in ready:
        targets.setdefault((endpoint.address, endpoint.port), priority)
    items: list[RecordData] = []
    additional: list[Record] = []
    first_additional: dict[IPAddress, int] = {}
    index: list[int] = []
    for (address, port), priority in targets.items():
        target = names.addr_name(address) + origin
        items.append(Srv(priority, SRV_WEIGHT, port, target))
        if address not in first_additional:
            first_additional[address] = len(additional)
            additional.append(Record(owner=target, ttl=config.endpoints_ttl, data=address))
        index.append(first_additional[address])
    rrset = RRset(
        config.endpoints_ttl,
        tuple(items),
        rotate=True,
        additional=tuple(additional),
        additional_index=tuple(index),
    )
    return Map({RecordType.SRV: rrset}) if items else EMPTY_NODE


def _node(ttl: int, items: Iterable[RecordData], *, rotate: bool = False) -> Node:
    """A node of ``items``, one RRset per type, in the order given."""
    by_type: dict[RecordType, list[RecordData]] = {}
    for item in items:
        by_type.setdefault(record_type(item), []).append(item)
    return Map({rtype: RRset(ttl, tuple(of_type), rotate) for rtype, of_type in by_type.items()})


def _merge(claims: Map[str, _Claim] | None) -> Node | None:
    """The node of a name from the claims on it; None when nobody claims it."""
    if not claims:
        return None
    if len(claims) == 1:
        # The common case, and the merge of one claim is the claim itself.
        for claim in claims.values():
            return claim.node
    ranked = sorted(claims.items(), key=lambda item: (item[1].kind is _Kind.ALIAS, item[0]))
    return ranked[0][1].node
