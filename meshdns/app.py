"""`meshdns serve`: the registry, its HTTP API and the DNS server in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

import uvicorn
from sqlalchemy.engine import make_url

from dnsserver.config import DnsLimits, ZoneConfig
from dnsserver.forward import Forwarder, UpstreamServer, system_upstreams
from dnsserver.handler import Handler
from dnsserver.notify import Notifier
from dnsserver.server import DnsServer
from meshdns import __version__
from meshdns.console import console_router, handler_answers
from meshdns.metrics import ApiRequestCounts, ServeCollector, add_metrics_route
from meshdns.settings import RECURSION_DATAPLANES, RECURSION_NONE, Settings, split_list
from meshdns.workers import Workers, server_id
from registry.agents.liveness import Liveness, LivenessSettings
from registry.agents.routes import agent_router
from registry.agents.service_feed import ServiceFeed
from registry.api import create_app
from registry.api.prometheus_sd import prometheus_sd_router
from registry.auth import Authenticator
from registry.errors import RegistryError
from registry.feed.follower import RegistryFollower
from registry.snapshot import Delta, Snapshot
from registry.store import Store, VipSettings
from registry.store.database import check_schema_current, create_engine, upgrade

log = logging.getLogger("meshdns")

DEFAULT_MESH = "default"  # Kuma's: created when a standalone or global control plane has none


class _ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` owns the process's signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


async def prepare_database(url: str) -> None:
    """SQLite is ours to create and migrate; any other database must already be migrated."""
    if is_sqlite(url):
        await upgrade(url)
    else:
        await check_schema_current(url)


def zone_config(settings: Settings, process: int = 0) -> ZoneConfig:
    """The DNS settings; ``process`` is the index of the DNS process (workers: 1..N-1)."""
    address = ip_address(settings.dns_address)
    return ZoneConfig(
        domain=settings.domain.strip(".").lower(),
        default_mesh=settings.default_mesh,
        ttl=settings.ttl,
        endpoints_ttl=settings.endpoints_ttl,
        negative_ttl=settings.negative_ttl,
        ns_address=None if address.is_unspecified else address,
        local_zone=settings.zone,
        allow_recursion=tuple(
            ip_network(item, strict=False)
            for item in split_list(settings.allow_recursion)
            if item not in (RECURSION_DATAPLANES, RECURSION_NONE)
        ),
        recursion_for_dataplanes=RECURSION_DATAPLANES in split_list(settings.allow_recursion),
        resolver_addresses=frozenset(
            ip_address(item) for item in split_list(settings.resolver_address)
        ),
        allow_transfer=tuple(
            ip_network(item, strict=False) for item in split_list(settings.allow_transfer)
        ),
        server_id=server_id(process),
    )


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


def vip_settings(settings: Settings) -> VipSettings:
    return VipSettings(
        cidr=IPv4Network(settings.vip_cidr),
        cidr6=IPv6Network(settings.vip6_cidr) if settings.vip6_cidr else None,
        quarantine_seconds=settings.vip_quarantine,
    )


def liveness_settings(settings: Settings) -> LivenessSettings:
    return LivenessSettings(
        heartbeat_interval=settings.heartbeat_interval,
        offline_after=settings.offline_after,
        agent_cleanup_delay=settings.agent_cleanup_delay,
        offline_gc_age=settings.offline_gc_age,
    )


def agent_config(settings: Settings) -> dict[str, Any]:
    """What a connecting agent needs to answer DNS as this server does."""
    return {
        "domain": settings.domain.strip(".").lower(),
        "ttl": settings.ttl,
        "endpointsTtl": settings.endpoints_ttl,
        "negativeTtl": settings.negative_ttl,
        "zone": settings.zone,
    }


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down the API and the DNS server cleanly."""
    await prepare_database(settings.database_url)
    engine = create_engine(settings.database_url)
    # A global control plane serves no dataplanes: its replicated records take no VIPs.
    store = Store(engine, vip_settings(settings), mode=settings.mode)
    if settings.mode in ("standalone", "global") and await store.ensure_mesh(DEFAULT_MESH):
        log.info("created mesh %r", DEFAULT_MESH)

    upstreams = upstream_servers(settings)
    forwarder = Forwarder(upstreams) if upstreams else None
    if forwarder is None:
        log.warning("no upstream resolver: names outside %s are REFUSED", settings.domain)
    handler = Handler(zone_config(settings), forwarding=forwarder is not None)
    feed = ServiceFeed()  # what dataplane agents follow

    targets = [UpstreamServer.parse(item) for item in split_list(settings.notify)]
    notifier = (
        Notifier(handler.zones.origin, targets, lambda: handler.zones.soa) if targets else None
    )

    def publish(snapshot: Snapshot, delta: Delta | None) -> None:
        handler.update(snapshot, delta)
        feed.publish(snapshot, delta)
        if notifier is not None:
            notifier.changed()

    follower = RegistryFollower(store, publish, local_zone=settings.zone)
    await follower.load()
    liveness = Liveness(
        store,
        liveness_settings(settings),
        on_change=follower.wake,
        known=lambda key: None if (state := follower.view.dataplane(key)) is None else state.online,
    )

    def readiness() -> dict[str, Any]:
        # DESIGN: ready = snapshot loaded and change feed connected. DNS answers either way.
        return {
            "ready": follower.loaded and follower.connected,
            "snapshot": {"loaded": follower.loaded, "revision": follower.revision},
            "feed": {"connected": follower.connected, "listening": follower.listening},
        }

    async def written() -> None:
        # Read your writes: answer a write once this server's own DNS has it. Bounded,
        # so a slow feed delays the answer at most a second, never fails the write.
        with contextlib.suppress(RegistryError):
            await follower.wait_for(await store.revision(), timeout=1.0)

    def known_services(key: tuple[str, str]) -> frozenset[str] | None:
        state = follower.view.dataplane(key)
        return None if state is None else frozenset(state.services)

    app = create_app(
        store,
        ready=readiness,
        on_change=written,
        version=__version__,
        zone=settings.zone,
        auth=Authenticator(engine, loopback_admin=settings.loopback_admin),
        known_services=known_services,
        meshes_at=follower.view.meshes_at,
    )
    app.include_router(prometheus_sd_router(store, settings.zone))
    app.include_router(agent_router(store, liveness, feed, agent_config(settings), app.state.guard))
    # The web console (read-only; the app's authentication covers it).
    app.include_router(
        console_router(
            store,
            lambda: follower.view.snapshot,
            answer=handler_answers(handler),
            insights=liveness.insights,
            mode=settings.mode,
            zone=settings.zone,
        )
    )
    api = _ApiServer(
        uvicorn.Config(
            app,
            host=settings.api_address,
            port=settings.api_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # Agents keep one connection for heartbeats: uvicorn's default 5 s idle close
            # equals the default interval, so a close would cross a heartbeat in flight.
            timeout_keep_alive=int(settings.heartbeat_interval * 3) + 5,
            ssl_certfile=settings.api_tls_cert,
            ssl_keyfile=settings.api_tls_key,
            # Loopback is admin, so the client is the connection's peer: no X-Forwarded-For
            # header (nor FORWARDED_ALLOW_IPS in the environment) can make one look local.
            proxy_headers=False,
        )
    )
    dns = DnsServer(
        handler,
        settings.dns_address,
        settings.dns_port,
        limits=dns_limits(settings),
        forwarder=forwarder,
        reuse_port=settings.dns_workers > 1,
    )
    await dns.start()

    api_counts: dict[tuple[str, str, str], int] = {}
    app.add_middleware(ApiRequestCounts, counts=api_counts)
    collector = ServeCollector(
        dns=dns,
        handler=handler,
        follower=follower,
        api_counts=api_counts,
        version=__version__,
        mode=settings.mode,
        zone=settings.zone,
    )
    add_metrics_route(app, collector, store.revision)

    @app.get("/stats/dns")
    async def dns_stats() -> dict[str, int]:
        """This process's DNS counters: what was rate limited, TCP connections closed."""
        return dns.stats()

    workers = Workers(settings, dns.port, settings.dns_workers)
    try:
        await workers.start()
    except BaseException:
        await dns.close()
        raise

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    follow_task = asyncio.create_task(follower.run(), name="snapshot-follower")
    api_task = asyncio.create_task(api.serve(), name="api")
    # A global control plane's dataplanes are replicated with their zone's liveness; no
    # agent heartbeats there, so no sweeps either.
    liveness_task = (
        asyncio.create_task(liveness.run(), name="liveness") if settings.mode != "global" else None
    )
    notify_task = asyncio.create_task(notifier.run()) if notifier is not None else None
    started = {
        "version": __version__,
        "python": sys.version.split()[0],
        "mode": settings.mode,
        "zone": settings.zone,
        "database": make_url(settings.database_url).render_as_string(hide_password=True),
        "dns": f"{settings.dns_address}:{dns.port}",
        "api": f"{'https' if settings.api_tls_cert else 'http'}://"
        f"{settings.api_address}:{settings.api_port}",
        "domain": settings.domain,
        "dns_workers": settings.dns_workers,
    }
    # One line with all of it; in JSON logs (--log-format json) each is a field too.
    log.info(
        "meshdns %s (python %s) mode=%s database=%s dns=%s api=%s domain=%s",
        *(started[key] for key in ("version", "python", "mode", "database", "dns", "api")),
        settings.domain,
        extra=started,
    )
    stop_task = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({stop_task, api_task}, return_when=asyncio.FIRST_COMPLETED)
        if api_task in done and not api.started:
            raise OSError(f"the API could not listen on {settings.api_address}:{settings.api_port}")
    finally:
        log.info("shutting down")
        # Liveness first: agents cannot reach a stopping server, which must not judge them
        # offline (and tell its long polls so) in the seconds its API takes to close.
        if liveness_task is not None:
            liveness_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await liveness_task
        await liveness.close()
        api.should_exit = True
        stop_task.cancel()
        await asyncio.wait({api_task}, timeout=5)
        await workers.stop()
        follow_task.cancel()
        if notify_task is not None:
            notify_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow_task
        await dns.close()
        if forwarder is not None:
            await forwarder.close()
        await engine.dispose()
