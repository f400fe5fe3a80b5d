"""The legacy names' tables: each mesh's services under ``--domain``, kept current one
changed service at a time.

Every service claims the names it answers at (:mod:`dnsserver.claims`): its VIP name,
endpoints, SRV, its dotted aliases; its addresses answer ``<hex>.addr`` and PTR. Names
are relative to the origin.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from immutables import Map

from dnsserver import names
from dnsserver.claims import Claim, ClaimKind, ClaimSet, ClaimTables
from dnsserver.config import ZoneConfig
from dnsserver.nodes import SRV_LOCAL_PRIORITY, SRV_REMOTE_PRIORITY, SrvTarget, node, srv_node
from dnsserver.records import Name, Ns, RecordData
from dnsserver.zone import zone_origin
from registry.snapshot import Endpoint, IPAddress, MeshView, ServiceView

logger = logging.getLogger("meshdns.dns")

# One mesh's legacy tables; each address keeps, per service there, the TTL of the PTR
# naming the service.
MeshTables = ClaimTables[int]

# The apex and ns.<domain> are the server's own.
_STATIC_NAMES = frozenset({(), names.NS_NAME})


def apply_services(
    config: ZoneConfig,
    tables: MeshTables,
    changes: Iterable[tuple[str, ServiceView | None]],
    *,
    cross_zone: bool = False,
) -> MeshTables:
    """``tables`` with each named service replaced by its new view (None: gone).

    Endpoints of other zones are left out, unless ``cross_zone``: then they answer
    where the local ones do not (a client's variant, see :class:`dnsserver.views.Zones`).
    """
    origin = zone_origin(config)
    return tables.apply(
        (
            (name, None if view is None else _service_claims(config, origin, view, cross_zone))
            for name, view in changes
        ),
        _STATIC_NAMES,
    )


def build_mesh(config: ZoneConfig, mesh: MeshView, empty: MeshTables | None = None) -> MeshTables:
    """The legacy tables of ``mesh``: its services applied to the empty zone; none in a
    mesh that answers no legacy names (meshServices mode Exclusive)."""
    empty = empty or empty_tables(config)
    if not mesh.legacy_names:
        return empty
    return apply_services(config, empty, sorted(mesh.services.items()))


def empty_tables(config: ZoneConfig) -> MeshTables:
    """The apex (NS; the SOA is added when answering) and ns.<domain>, nothing else."""
    origin = zone_origin(config)
    ns_node = node(config.ttl, [config.ns_address] if config.ns_address else [])
    apex = node(config.ttl, [Ns(target=names.NS_NAME + origin)])
    return MeshTables.of_nodes(Map({(): apex, names.NS_NAME: ns_node}))


def _service_claims(
    config: ZoneConfig, origin: Name, service: ServiceView, cross_zone: bool
) -> ClaimSet[int]:
    vip_name = names.service_name(service.name)
    endpoints_name = names.endpoints_name(service.name)
    if vip_name is None or endpoints_name is None or vip_name in _STATIC_NAMES:
        logger.debug("service %r has no DNS name: not a valid DNS label", service.name)
        return ClaimSet(claims=(), ancestors=frozenset())
    claims: list[tuple[Name, Claim]] = []
    vips: list[RecordData] = [vip for vip in (service.vip, service.vip6) if vip is not None]
    vip_node = node(config.ttl, vips)
    local = [endpoint for endpoint in service.endpoints if is_local(config, endpoint)]
    ready = [endpoint for endpoint in local if endpoint.ready and endpoint.online]
    remote: list[Endpoint] = []
    if cross_zone:
        remote = [endpoint for endpoint in service.endpoints if not is_local(config, endpoint)]
    remote_ready = [endpoint for endpoint in remote if endpoint.ready and endpoint.online]
    # dict.fromkeys: one record per address, in endpoint order. Other zones' ingresses
    # only when no endpoint here can take the traffic (DESIGN, "DNS names").
    addresses: list[RecordData] = list(
        dict.fromkeys(endpoint.address for endpoint in ready or remote_ready)
    )
    endpoints_node = node(config.endpoints_ttl, addresses, rotate=True)

    claims.append((vip_name, Claim(ClaimKind.OWN, vip_node)))
    claims.append((endpoints_name, Claim(ClaimKind.OWN, endpoints_node)))
    srv_name = names.srv_name(service.name)
    if srv_name is not None:
        targets: list[SrvTarget] = [
            (SRV_LOCAL_PRIORITY, endpoint.address, endpoint.port) for endpoint in ready
        ]
        targets += [
            (SRV_REMOTE_PRIORITY, endpoint.address, endpoint.port) for endpoint in remote_ready
        ]
        srv = srv_node(config.endpoints_ttl, origin, targets)
        claims.append((srv_name, Claim(ClaimKind.OWN, srv)))
    for alias, alias_node in (
        (names.dotted_alias(service.name), vip_node),
        (names.dotted_endpoints_alias(service.name), endpoints_node),
    ):
        if alias is not None:
            claims.append((alias, Claim(ClaimKind.ALIAS, alias_node)))

    known: dict[IPAddress, int] = {vip: config.ttl for vip in (service.vip, service.vip6) if vip}
    for endpoint in local:
        known.setdefault(endpoint.address, config.endpoints_ttl)
    for endpoint in remote:
        known.setdefault(endpoint.address, config.endpoints_ttl)

    ancestors = {owner[start:] for owner, _ in claims for start in range(1, len(owner))}
    if known:
        ancestors.add((names.ADDR_LABEL,))
    return ClaimSet(
        claims=tuple(claims), ancestors=frozenset(ancestors), addresses=tuple(known.items())
    )


def is_local(config: ZoneConfig, endpoint: Endpoint) -> bool:
    """Whether ``endpoint`` is in this control plane's zone (no zone: a local one)."""
    return endpoint.zone is None or endpoint.zone == config.local_zone
