"""`meshdns serve`: the registry, its HTTP API and the DNS server in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn
from sqlalchemy.engine import make_url

from dnsserver.forward import UpstreamServer
from dnsserver.notify import Notifier
from meshdns import __version__
from meshdns.console import console_router, handler_answers
from meshdns.metrics import ApiRequestCounts, ServeCollector, add_metrics_route
from meshdns.settings import Settings, split_list
from meshdns.wiring import (
    agent_config,
    build_dns_server,
    build_follower,
    build_forwarder,
    build_handler,
    build_store,
    liveness_settings,
    prepare_database,
)
from meshdns.workers import Workers
from registry.agents.liveness import Liveness
from registry.agents.routes import agent_router
from registry.agents.service_feed import ServiceFeed
from registry.api.app import create_app
from registry.api.prometheus_sd import prometheus_sd_router
from registry.auth.authentication import Authenticator
from registry.auth.tokens import prune_revocations
from registry.feed.compaction import Compactor, Window
from registry.meshservice.generate import MeshServiceGenerator
from registry.meshservice.status import status_of
from registry.snapshot import Delta, Snapshot
from registry.store.database import create_engine

log = logging.getLogger("meshdns")

DEFAULT_MESH = "default"  # Kuma's: created when a standalone or global control plane has none


class _ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` owns the process's signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down the API and the DNS server cleanly."""
    await prepare_database(settings.database_url)
    engine = create_engine(settings.database_url)
    # A global control plane serves no dataplanes: its replicated records take no VIPs.
    store = build_store(settings, engine)
    if settings.mode in ("standalone", "global") and await store.ensure_mesh(DEFAULT_MESH):
        log.info("created mesh %r", DEFAULT_MESH)
    if not settings.skip_default_hostname_generators:
        for name in await store.ensure_hostname_generators():
            log.info("created HostnameGenerator %r", name)

    forwarder = build_forwarder(settings)
    if forwarder is None:
        log.warning("no upstream resolver: names outside %s are REFUSED", settings.domain)
    handler = build_handler(settings, forwarder=forwarder)
    feed = ServiceFeed(lambda key: follower.view.dataplane(key))  # what agents follow

    targets = [UpstreamServer.parse(item) for item in split_list(settings.notify)]
    notifier = (
        Notifier(handler.zones.origin, targets, lambda: handler.zones.soa) if targets else None
    )

    def publish(snapshot: Snapshot, delta: Delta | None) -> None:
        handler.update(snapshot, delta)
        feed.publish(snapshot, delta)
        if notifier is not None:
            notifier.changed()

    follower = build_follower(settings, store, publish)
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

    async def written(revision: int) -> None:
        # Read your writes: answer a write once this server's own DNS has the revision
        # it committed. Bounded, so a slow feed delays the answer at most a second,
        # never fails the write.
        await follower.wait_for(revision, timeout=1.0)

    def known_services(key: tuple[str, str]) -> frozenset[str] | None:
        state = follower.view.dataplane(key)
        return None if state is None else frozenset(state.services)

    def service_status(kind: str, mesh: str, name: str) -> dict[str, Any] | None:
        # Never stored: rendered from the view DNS answers from, so the two agree.
        return status_of(follower.view, kind, mesh, name)

    app = create_app(
        store,
        ready=readiness,
        on_change=written,
        version=__version__,
        zone=settings.zone,
        auth=Authenticator(engine, loopback_admin=settings.loopback_admin),
        known_services=known_services,
        meshes_at=lambda address: follower.view.meshes_at(address),
        status_of=service_status,
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
            service_model=lambda: follower.view,
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
    dns = build_dns_server(settings, handler, forwarder, settings.dns_port)
    await dns.start()

    api_counts: dict[tuple[str, str, str], int] = {}
    app.add_middleware(ApiRequestCounts, counts=api_counts)
    compactor = Compactor(
        store,
        Window(settings.change_log_revisions, settings.change_log_max_age),
        settings.change_log_compact_interval,
        prunes=[lambda now: prune_revocations(engine, now)],
    )
    collector = ServeCollector(
        dns=dns,
        handler=handler,
        follower=follower,
        compactor=compactor,
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
    compact_task = asyncio.create_task(compactor.run(), name="change-log-compaction")
    # Kuma's MeshService generation runs where dataplanes are served: not on global.
    generator = None
    if settings.mode != "global":
        generator = MeshServiceGenerator(
            store, zone=settings.zone, grace_period=settings.mesh_service_deletion_grace_period
        )
        follower.on_change(("Dataplane", "Mesh"), generator.changed)
        generator.start()
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
        feed.close()  # its long polls answer now: the API waits for them to close
        stop_task.cancel()
        await asyncio.wait({api_task}, timeout=5)
        await workers.stop()
        if generator is not None:
            await generator.stop()
        follow_task.cancel()
        compact_task.cancel()
        if notify_task is not None:
            notify_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow_task
        await dns.close()
        if forwarder is not None:
            await forwarder.close()
        await engine.dispose()
