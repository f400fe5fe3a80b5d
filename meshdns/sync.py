"""`meshdns sync`: the sync worker between one zone's registry and the global one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from meshdns.settings import Settings
from meshdns.wiring import prepare_database, sync_settings, vip_settings
from registry.store import Store
from registry.store.database import create_engine
from registry.sync import SyncWorker
from registry.write_rules import GLOBAL, ZONE

log = logging.getLogger("meshdns.sync")


async def run_sync(settings: Settings) -> None:
    """Replicate until SIGINT or SIGTERM; each batch is committed whole, so stopping (or
    being killed) at any point loses nothing."""
    assert settings.zone and settings.zone_database_url and settings.global_database_url
    for url in (settings.zone_database_url, settings.global_database_url):
        await prepare_database(url)
    zone_engine = create_engine(settings.zone_database_url)
    global_engine = create_engine(settings.global_database_url)
    # Global holds no VIPs; the zone gives remote services theirs.
    vips = vip_settings(settings)
    worker = SyncWorker(
        settings.zone,
        Store(zone_engine, vips, mode=ZONE),
        Store(global_engine, vips, mode=GLOBAL),
        sync_settings(settings),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("sync of zone %r with global started", settings.zone)
    metrics = None
    lag_task = None
    if settings.metrics_port is not None:
        from meshdns.sync_metrics import measure_lag, serve_metrics

        metrics = serve_metrics(worker, settings.metrics_address, settings.metrics_port)
        lag_task = asyncio.create_task(measure_lag(worker), name="sync-lag")
    task = asyncio.create_task(worker.run(), name="sync")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raise what stopped it
    finally:
        task.cancel()
        stopping.cancel()
        if lag_task is not None:
            lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag_task
        if metrics is not None:
            metrics.shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await zone_engine.dispose()
        await global_engine.dispose()
        log.info("sync of zone %r stopped", settings.zone)
