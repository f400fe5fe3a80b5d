"""The parts the processes are made of, each built here, once, from the settings.

`meshdns serve` is DNS process 0; its `--dns-workers` are processes 1..N-1; `export-zone`
reads the registry as a DNS process does; `dp run` answers one mesh beside a workload.
All build their store, follower, handler and forwarder with these functions, so every
process answers a question the same way.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from dnsserver.config import DnsLimits, ZoneConfig
from dnsserver.forward import Forwarder, UpstreamServer, system_upstreams
from dnsserver.handler import Handler
from dnsserver.server import DnsServer
from meshdns.agent import AgentSettings
from meshdns.settings import RECURSION_DATAPLANES, RECURSION_NONE, Settings, split_list
from registry.agents.liveness import LivenessSettings
from registry.feed.follower import Publish, RegistryFollower
from registry.store import Store, VipSettings
from registry.store.database import check_schema_current, upgrade
from registry.sync import SyncSettings

log = logging.getLogger("meshdns")


def server_id(process: int) -> str:
    """What `id.server. CH TXT` answers in DNS process ``process``."""
    return f"meshdns-{process}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


async def prepare_database(url: str) -> None:
    """SQLite is ours to create and migrate; any other database must already be migrated."""
    if is_sqlite(url):
        await upgrade(url)
    else:
        await check_schema_current(url)


def _resolver_addresses(settings: Settings) -> frozenset[IPv4Address | IPv6Address]:
    return frozenset(ip_address(item) for item in split_list(settings.resolver_address))


def _domain(settings: Settings) -> str:
    return settings.domain.strip(".").lower()


def zone_config(settings: Settings, process: int = 0) -> ZoneConfig:
    """The DNS settings of DNS process ``process`` (0: `serve` itself)."""
    address = ip_address(settings.dns_address)
    recursion = split_list(settings.allow_recursion)
    return ZoneConfig(
        domain=_domain(settings),
        default_mesh=settings.default_mesh,
        ttl=settings.ttl,
        endpoints_ttl=settings.endpoints_ttl,
        negative_ttl=settings.negative_ttl,
        ns_address=None if address.is_unspecified else address,
        local_zone=settings.zone,
        allow_recursion=tuple(
            ip_network(item, strict=False)
            for item in recursion
            if item not in (RECURSION_DATAPLANES, RECURSION_NONE)
        ),
        recursion_for_dataplanes=RECURSION_DATAPLANES in recursion,
        resolver_addresses=_resolver_addresses(settings),
        allow_transfer=tuple(
            ip_network(item, strict=False) for item in split_list(settings.allow_transfer)
        ),
        server_id=server_id(process),
    )


def agent_config(settings: Settings) -> dict[str, Any]:
    """What a connecting agent is told, to answer DNS as this server does."""
    return {
        "domain": _domain(settings),
        "ttl": settings.ttl,
        "endpointsTtl": settings.endpoints_ttl,
        "negativeTtl": settings.negative_ttl,
        "zone": settings.zone,
    }


def dns_limits(settings: Settings) -> DnsLimits:
    """What one client may cost the DNS server (rate limit, TCP connections)."""
    return DnsLimits(
        rate=settings.rate_limit,
        slip=settings.rate_limit_slip,
        ipv4_prefix=settings.rate_limit_ipv4_prefix,
        ipv6_prefix=settings.rate_limit_ipv6_prefix,
        tcp_max_connections=settings.tcp_max_connections,
        tcp_idle_timeout=settings.tcp_idle_timeout,
    )


def vip_settings(settings: Settings) -> VipSettings:
    """The ranges virtual IPs are allocated from, and how long a released one rests."""
    return VipSettings(
        cidr=IPv4Network(settings.vip_cidr),
        cidr6=IPv6Network(settings.vip6_cidr) if settings.vip6_cidr else None,
        quarantine_seconds=settings.vip_quarantine,
        mesh_service_cidr=IPv4Network(settings.mesh_service_cidr),
        mesh_external_service_cidr=IPv4Network(settings.mesh_external_service_cidr),
        mesh_multizone_service_cidr=IPv4Network(settings.mesh_multizone_service_cidr),
    )


def liveness_settings(settings: Settings) -> LivenessSettings:
    """The windows of dataplane liveness: heartbeats, offline, deletion."""
    return LivenessSettings(
        heartbeat_interval=settings.heartbeat_interval,
        offline_after=settings.offline_after,
        agent_cleanup_delay=settings.agent_cleanup_delay,
        offline_gc_age=settings.offline_gc_age,
    )


def sync_settings(settings: Settings) -> SyncSettings:
    """How `meshdns sync` replicates: changes a transaction, and how often it polls."""
    return SyncSettings(batch=settings.sync_batch, poll_interval=settings.sync_poll_interval)


def upstream_servers(settings: Settings) -> list[UpstreamServer]:
    """`--upstream`, else resolv.conf's nameservers, never this server itself (a loop)."""
    given = split_list(settings.upstream)
    servers = [UpstreamServer.parse(item) for item in given] if given else system_upstreams()
    ours = ip_address(settings.dns_address)

    def is_us(server: UpstreamServer) -> bool:
        if server.port != settings.dns_port:
            return False
        return server.address == ours or (ours.is_unspecified and server.address.is_loopback)

    for server in filter(is_us, servers):
        log.warning("not forwarding to %s: that is this server", server)
    return [server for server in servers if not is_us(server)]


def build_forwarder(settings: Settings) -> Forwarder | None:
    """Where names outside the zone are resolved; None when there is no upstream."""
    upstreams = upstream_servers(settings)
    return Forwarder(upstreams) if upstreams else None


def build_handler(
    settings: Settings, process: int = 0, forwarder: Forwarder | None = None
) -> Handler:
    """The DNS handler of DNS process ``process``; it forwards when given a forwarder."""
    return Handler(zone_config(settings, process), forwarding=forwarder is not None)


def build_dns_server(
    settings: Settings, handler: Handler, forwarder: Forwarder | None, port: int
) -> DnsServer:
    """The DNS server (UDP and TCP) on ``port``: `--dns-port`, or for workers the port
    `serve` bound; shared with the other DNS processes when there are workers."""
    return DnsServer(
        handler,
        settings.dns_address,
        port,
        limits=dns_limits(settings),
        forwarder=forwarder,
        reuse_port=settings.dns_workers > 1,
    )


def build_store(settings: Settings, engine: AsyncEngine) -> Store:
    """The registry store, with this control plane's mode and VIP ranges."""
    return Store(engine, vip_settings(settings), mode=settings.mode)


def build_follower(settings: Settings, store: Store, publish: Publish) -> RegistryFollower:
    """The registry follower that hands each snapshot to ``publish``: its view knows
    which zone is this one (ingresses of others offer remote services; egresses of this
    one carry traffic to them)."""
    return RegistryFollower(store, publish, local_zone=settings.zone)


def agent_settings(settings: Settings) -> AgentSettings:
    """What `dp run`'s agent is told; its DNS server is limited as `serve`'s is."""
    assert settings.cp and settings.dataplane_file  # required options
    return AgentSettings(
        cp=settings.cp,
        dataplane_file=Path(settings.dataplane_file),
        dns_address=settings.dp_dns_address,
        dns_port=settings.dp_dns_port,
        upstream=settings.upstream,
        token_file=Path(settings.dp_token_file) if settings.dp_token_file else None,
        ca_cert=Path(settings.ca_cert) if settings.ca_cert else None,
        limits=dns_limits(settings),
        resolver_addresses=_resolver_addresses(settings),
    )
