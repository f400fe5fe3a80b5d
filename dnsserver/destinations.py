"""The destinations' tables: each mesh's MeshServices and their kin, answered at their
hostnames, kept current one changed destination at a time.

A destination claims (:mod:`dnsserver.claims`) each of its hostnames (A: its VIP; AAAA
NODATA) and ``_<port>._tcp.<hostname>`` for each port (SRV: where the port is served).
Its VIP's reverse name gives its hostnames, and its VIP and endpoint addresses answer
``<hex>.addr.<domain>`` (the SRV targets). Names are absolute: a hostname is answered in
the zone of the longest origin it is under (``--domain``'s or a generator's), and not at
all when it is under none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from immutables import Map

from dnsserver import names
from dnsserver.claims import Claim, ClaimKind, ClaimSet, ClaimTables
from dnsserver.config import ZoneConfig
from dnsserver.nodes import SRV_LOCAL_PRIORITY, SRV_REMOTE_PRIORITY, SrvTarget, node, srv_node
from dnsserver.records import Name, name_from_text
from dnsserver.tables import is_local
from dnsserver.zone import AddressNames, Node, origin_of, zone_origin
from registry.snapshot import Destination, DestinationPort, IPAddress

logger = logging.getLogger("meshdns.dns")

# One mesh's destination tables; each address keeps, per destination there, the names
# its reverse name gives.
DestinationTables = ClaimTables[AddressNames]
EMPTY_DESTINATIONS: DestinationTables = ClaimTables.of_nodes(Map())

_NOTHING: ClaimSet[AddressNames] = ClaimSet(claims=(), ancestors=frozenset())
# RFC 1035: 255 bytes on the wire, i.e. 253 characters written without the final dot.
_MAX_NAME_TEXT = 253
# Hostnames under no zone are logged once each; past this many, no longer remembered
# (nor logged), so a flood of them cannot grow the process.
_MAX_REPORTED = 10_000
_reported_unzoned: set[str] = set()


def hostname_origins(zones: Iterable[str]) -> frozenset[Name]:
    """The origins of the zones destinations' hostnames fall under, from their text."""
    return frozenset(
        origin for zone in zones if (origin := absolute_name(zone)) is not None and origin
    )


def apply_destinations(
    config: ZoneConfig,
    origins: frozenset[Name],
    tables: DestinationTables,
    changes: Iterable[tuple[str, Destination | None]],
) -> DestinationTables:
    """``tables`` with each keyed destination replaced by its new view (None: gone);
    hostnames answer in the zones of ``origins`` and ``--domain``."""
    return tables.apply(
        (key, None if destination is None else _claims(config, origins, destination))
        for key, destination in changes
    )


def absolute_name(text: str) -> Name | None:
    """``text`` (a hostname, with or without the final dot) as a folded absolute name;
    None when it cannot be one."""
    stripped = text.strip(".")
    if not stripped.isascii() or len(stripped) > _MAX_NAME_TEXT:
        return None
    name = name_from_text(stripped.lower())
    if any(not 0 < len(label) <= 63 for label in name):
        return None
    return name


def _claims(
    config: ZoneConfig, origins: frozenset[Name], destination: Destination
) -> ClaimSet[AddressNames]:
    if destination.vip is None:
        # As Kuma: a hostname resolves to the VIP, so without one there is nothing to say.
        return _NOTHING
    domain = zone_origin(config)
    static = {names.NS_NAME + domain}
    vip_node = node(config.ttl, [destination.vip])
    ports = _srv_nodes(config, domain, destination.ports)
    claims: dict[Name, Claim] = {}
    ancestors: set[Name] = {(names.ADDR_LABEL, *domain)}
    hostnames: list[Name] = []
    for hostname in destination.hostnames:
        name = absolute_name(hostname)
        origin = None if name is None else origin_of(name, domain, origins)
        if name is None or origin is None:
            _report_unzoned(hostname, destination)
            continue
        if name == origin or name in static or name in claims:
            continue  # a zone's apex and the name server are the server's own
        hostnames.append(name)
        owned = [(name, vip_node)]
        owned += [
            (labels + name, srv)
            for labels, srv in ports
            if len(b".".join(labels + name)) <= _MAX_NAME_TEXT
        ]
        for owner, owner_node in owned:
            claims.setdefault(owner, Claim(ClaimKind.OWN, owner_node))
            depth = len(owner) - len(origin)
            ancestors.update(owner[start:] for start in range(1, depth))
    addresses: dict[IPAddress, AddressNames] = {
        destination.vip: AddressNames(config.ttl, tuple(hostnames))
    }
    endpoint_names = AddressNames(config.endpoints_ttl)
    for port in destination.ports:
        for endpoint in port.endpoints:
            addresses.setdefault(endpoint.address, endpoint_names)
    return ClaimSet(
        claims=tuple(claims.items()),
        ancestors=frozenset(ancestors),
        addresses=tuple(addresses.items()),
    )


def _srv_nodes(
    config: ZoneConfig, domain: Name, ports: tuple[DestinationPort, ...]
) -> list[tuple[Name, Node]]:
    """Each port's ``_<port>._tcp`` labels and SRV node; ports of one name answer together."""
    targets: dict[Name, list[SrvTarget]] = {}
    for port in ports:
        labels = names.srv_name(port.name)
        if labels is None:
            logger.debug("port %r has no SRV name: not a valid DNS label", port.name)
            continue
        of_port = targets.setdefault(labels, [])
        for endpoint in port.endpoints:
            if endpoint.serving:
                local = is_local(config, endpoint)
                priority = SRV_LOCAL_PRIORITY if local else SRV_REMOTE_PRIORITY
                of_port.append((priority, endpoint.address, endpoint.port))
        for host, host_port in port.hosts:
            target = absolute_name(host)
            if target:
                of_port.append((SRV_LOCAL_PRIORITY, target, host_port))
    return [
        (labels, srv_node(config.endpoints_ttl, domain, of_port))
        for labels, of_port in targets.items()
    ]


def _report_unzoned(hostname: str, destination: Destination) -> None:
    if hostname in _reported_unzoned or len(_reported_unzoned) >= _MAX_REPORTED:
        return
    _reported_unzoned.add(hostname)
    logger.warning(
        "%s %s: hostname %r is under no zone this server answers; not answered",
        destination.kind,
        destination.name,
        hostname,
    )
