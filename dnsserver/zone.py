"""Zone tables: each mesh's view of the zone, kept current one changed service at a time.

Every service *claims* the names it answers at (its VIP name, endpoints, SRV, its
dotted aliases), and needs the names above them to exist (empty non-terminals). A
name's records are merged from the claims on it alone, so a changed service only
touches its own names: applying it costs what the service holds, not what the
registry holds. The tables are persistent maps (:mod:`immutables`), so an update
makes new tables sharing all untouched entries with the old ones, and swapping them
in is one assignment.

The names of addresses (``<hex>.addr`` and the reverse names) are not tables of
records: there is one per address, so at 100,000 endpoints they were most of a
build's time and memory. An index of address -> services holds what they answer,
and a lookup reads the address from the name and makes the records then.

A mesh's tables hold its own zone's services only. Services other zones offer are
seen by some clients and not others (DESIGN, "Multi-zone"), so a client that may
reach some of them is answered from a *variant*: its mesh's tables with those
services applied on top, made on first use and shared by every client that sees the
same set.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from immutables import Map

from dnsserver import names
from dnsserver.config import ZoneConfig
from dnsserver.records import (
    Name,
    Ns,
    Ptr,
    Record,
    RecordData,
    RecordType,
    Soa,
    Srv,
    name_from_text,
    record_type,
)
from registry.snapshot import Delta, Endpoint, IPAddress, MeshView, ServiceView, Snapshot

logger = logging.getLogger("meshdns.dns")

# We serve no zone transfers, so these only need to be plausible (RFC 1912 2.2).
_SOA_REFRESH = 3600
_SOA_RETRY = 600
_SOA_EXPIRE = 86400
# SRV (RFC 2782): local endpoints first, then cross-zone ones (another zone's ingress,
# or this zone's egress); equal weights, so clients spread evenly.
SRV_LOCAL_PRIORITY = 0
SRV_REMOTE_PRIORITY = 1
SRV_WEIGHT = 1
# Variants remembered per generation of the tables (then they are made anew).
_MAX_VARIANTS = 4096
_NO_SERVICES: frozenset[str] = frozenset()


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
_EMPTY_NODE: Node = Map()


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
                node = _EMPTY_NODE
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


@dataclass(frozen=True, slots=True)
class ClientZone:
    """The zone a client is answered from, and a key naming that view of it.

    Clients with equal keys get equal answers (within one generation of the tables):
    the key is the mesh's name, or, for a variant with other zones' services, the
    mesh's name and a number no other variant of the generation has.
    """

    key: str
    zone: Zone


@dataclass(frozen=True, slots=True)
class Zones:
    """Every mesh's tables and how to pick the ones a client is answered from."""

    config: ZoneConfig
    origin: Name
    soa: Soa
    meshes: Map[str, MeshTables]
    # Answered to clients whose mesh does not exist: the apex and nothing else.
    empty: MeshTables
    client_meshes: Mapping[IPAddress, str]
    # The snapshot's meshes (their remote services, mTLS and traffic permissions) and
    # the services at each client address: what decides which remote services a client
    # sees. References to the snapshot's own mappings.
    mesh_views: Mapping[str, MeshView]
    client_services: Mapping[IPAddress, frozenset[str]]
    # Variants made so far, by (mesh, the client's services) and by (mesh, the remote
    # services seen); dropped with this generation of the tables.
    _by_client: dict[tuple[str, frozenset[str]], ClientZone] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _by_visible: dict[tuple[str, frozenset[str]], ClientZone] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _variant_numbers: Iterator[int] = field(
        default_factory=itertools.count, init=False, repr=False, compare=False
    )

    def zone_for(self, client: IPAddress) -> Zone:
        """The zone ``client`` is answered from (see :meth:`client_zone`)."""
        return self.client_zone(client).zone

    def client_zone(self, client: IPAddress) -> ClientZone:
        """The zone of the client's mesh (else of the default mesh), with the services
        of other zones that the client may reach (DESIGN, "Multi-zone")."""
        if client in self.config.resolver_addresses:
            # A resolver forwarding a node's queries is no one dataplane (docs/dns.md).
            mesh, services = self.config.default_mesh, _NO_SERVICES
        else:
            mesh = self.client_meshes.get(client, self.config.default_mesh)
            services = self.client_services.get(client, _NO_SERVICES)
        view = self.mesh_views.get(mesh)
        if view is None or not view.mtls or not view.remote:
            # No cross-zone traffic in this mesh: every client sees the mesh's tables.
            return ClientZone(mesh, self.zone_of(self.meshes.get(mesh, self.empty)))
        variant = self._by_client.get((mesh, services))
        if variant is None:
            variant = self._variant(mesh, view, services)
            if len(self._by_client) >= _MAX_VARIANTS:
                self._by_client.clear()
            self._by_client[(mesh, services)] = variant
        return variant

    def _variant(self, mesh: str, view: MeshView, services: frozenset[str]) -> ClientZone:
        """The view of ``mesh`` (``view``) for a client serving ``services``."""
        visible = frozenset(
            name
            for name in view.remote
            if any(rule.allows(services, name) for rule in view.permissions)
        )
        variant = self._by_visible.get((mesh, visible))
        if variant is not None:
            return variant
        tables = self.meshes.get(mesh, self.empty)
        if visible:
            changes = [
                (name, _cross_zone_view(view.services.get(name), view.remote[name]))
                for name in sorted(visible)
            ]
            tables = tables.apply(self.config, changes, cross_zone=True)
            # Unique in this generation, even after the memo is cleared.
            key = f"{mesh}\0{next(self._variant_numbers)}"
            variant = ClientZone(key, self.zone_of(tables))
        else:
            variant = ClientZone(mesh, self.zone_of(tables))
        if len(self._by_visible) >= _MAX_VARIANTS:
            self._by_visible.clear()
        self._by_visible[(mesh, visible)] = variant
        return variant

    def zone_of(self, tables: MeshTables) -> Zone:
        return Zone(
            origin=self.origin,
            soa=self.soa,
            negative_ttl=self.config.negative_ttl,
            nodes=tables.nodes,
            addresses=tables.addresses,
            address_ttl=self.config.endpoints_ttl,
        )

    def is_dataplane(self, client: IPAddress) -> bool:
        return client in self.client_meshes


def zone_origin(config: ZoneConfig) -> Name:
    return name_from_text(config.domain.lower())


def build_zones(config: ZoneConfig, snapshot: Snapshot) -> Zones:
    """Build every mesh's tables from ``snapshot``."""
    empty = _empty_tables(config)
    endpoints = sum(
        len(service.endpoints)
        for mesh in snapshot.meshes.values()
        for service in mesh.services.values()
    )
    with _collector_paused(freeze=endpoints >= _FREEZE_AT_ENDPOINTS):
        meshes = Map(
            {name: build_mesh(config, mesh, empty) for name, mesh in snapshot.meshes.items()}
        )
    return Zones(
        config=config,
        origin=zone_origin(config),
        soa=_soa(config, snapshot.revision),
        meshes=meshes,
        empty=empty,
        client_meshes=snapshot.dataplane_meshes,
        mesh_views=snapshot.meshes,
        client_services=snapshot.client_services,
    )


def update_zones(zones: Zones, snapshot: Snapshot, delta: Delta) -> Zones:
    """``zones`` moved to ``snapshot``, redoing only what ``delta`` says changed.

    Gives the same tables as :func:`build_zones` of ``snapshot``, provided ``delta``
    names every service and mesh that differs between the two snapshots. A mesh whose
    remote services or permissions alone changed (``delta.remote``) has nothing to
    redo: its variants are made from the new snapshot on first use.
    """
    config = zones.config
    meshes = zones.meshes.mutate()
    for mesh in delta.meshes:
        view = snapshot.meshes.get(mesh)
        if view is None:
            meshes.pop(mesh, None)
        else:
            meshes[mesh] = build_mesh(config, view, zones.empty)
    changed: dict[str, list[str]] = {}
    for mesh, service in delta.services:
        if mesh not in delta.meshes:
            changed.setdefault(mesh, []).append(service)
    for mesh, services in changed.items():
        view = snapshot.meshes.get(mesh)
        tables = meshes.get(mesh)
        if view is None:
            meshes.pop(mesh, None)
        elif tables is None:
            meshes[mesh] = build_mesh(config, view, zones.empty)
        else:
            meshes[mesh] = tables.apply(
                config, ((service, view.services.get(service)) for service in services)
            )
    return Zones(
        config=config,
        origin=zones.origin,
        soa=_soa(config, snapshot.revision),
        meshes=meshes.finish(),
        empty=zones.empty,
        # References to the snapshot's own mappings: nothing to redo.
        client_meshes=snapshot.dataplane_meshes,
        mesh_views=snapshot.meshes,
        client_services=snapshot.client_services,
    )


# Past this many endpoints, a built zone is frozen out of the cyclic collector's walks.
_FREEZE_AT_ENDPOINTS = 20_000


@contextlib.contextmanager
def _collector_paused(*, freeze: bool) -> Iterator[None]:
    """No cyclic garbage collection while building; for large zones none over it after.

    The tables hold no reference cycles: reference counting frees them. But a build
    makes millions of objects, and each batch would trigger a collection walking all
    those made before (three quarters of a build's time). Afterwards, every full
    collection would walk them all again: at 100,000 endpoints a pause of seconds in
    the middle of some later update. So a large build ends by moving what exists to the
    collector's permanent generation (``gc.freeze``), which it never walks. Only large
    ones: a cycle that was alive at the freeze and dies later is never collected, a
    small price once per large rebuild, a leak if paid on every small one.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


def build_mesh(config: ZoneConfig, mesh: MeshView, empty: MeshTables | None = None) -> MeshTables:
    """The tables of ``mesh``: its services applied to the empty zone."""
    empty = empty or _empty_tables(config)
    return empty.apply(config, sorted(mesh.services.items()))


def build_zone(config: ZoneConfig, mesh: MeshView | None, revision: int) -> Zone:
    """The zone as seen from ``mesh`` (None: the apex only); for tests and tools."""
    tables = build_mesh(config, mesh) if mesh is not None else _empty_tables(config)
    soa = _soa(config, revision)
    return Zone(
        zone_origin(config),
        soa,
        config.negative_ttl,
        tables.nodes,
        tables.addresses,
        config.endpoints_ttl,
    )


def _soa(config: ZoneConfig, revision: int) -> Soa:
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


_STATIC_NAMES = ((), names.NS_NAME)


def _empty_tables(config: ZoneConfig) -> MeshTables:
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


def _cross_zone_view(local: ServiceView | None, remote: ServiceView) -> ServiceView:
    """A service as a client that may reach it in other zones sees it: one VIP, the
    endpoints of every zone."""
    if local is None:
        return remote
    return ServiceView(
        name=local.name,
        vip=local.vip or remote.vip,
        vip6=local.vip6 or remote.vip6,
        endpoints=local.endpoints + remote.endpoints,
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
    return Map({RecordType.SRV: rrset}) if items else _EMPTY_NODE


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
