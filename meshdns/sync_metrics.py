"""`meshdns sync --metrics-port N`: the sync worker's progress for Prometheus.

The worker has no API; prometheus_client's own HTTP server (a thread) serves GET
/metrics from plain values the worker keeps (registry/sync/__init__.py's SyncStats). The lag
needs both databases, so it is measured in the worker's event loop every
:data:`LAG_INTERVAL` seconds rather than at scrape time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from registry.errors import RegistryError
from registry.sync import SyncWorker

log = logging.getLogger("meshdns.sync")

LAG_INTERVAL = 1.0


class SyncCollector(Collector):
    """A sync worker's counts, by zone and direction."""

    def __init__(self, worker: SyncWorker) -> None:
        self._worker = worker

    def collect(self) -> Iterable[Metric]:
        zone, stats = self._worker.zone, self._worker.stats
        changes = CounterMetricFamily(
            "meshdns_sync_changes",
            "feed changes replicated, by zone and direction",
            labels=["zone", "direction"],
        )
        batches = CounterMetricFamily(
            "meshdns_sync_batches",
            "batches (transactions) replicated, by zone and direction",
            labels=["zone", "direction"],
        )
        for direction, count in list(stats.changes.items()):
            changes.add_metric([zone, direction], count)
        for direction, count in list(stats.batches.items()):
            batches.add_metric([zone, direction], count)
        rows = CounterMetricFamily(
            "meshdns_sync_rows",
            "rows written, by zone, direction and kind of resource",
            labels=["zone", "direction", "kind"],
        )
        for (direction, kind), count in list(stats.rows.items()):
            rows.add_metric([zone, direction, kind.replace(" ", "_")], count)
        yield from (changes, batches, rows)
        errors = CounterMetricFamily(
            "meshdns_sync_errors", "rounds cut short by a lost database", labels=["zone"]
        )
        errors.add_metric([zone], stats.errors)
        yield errors
        resyncs = CounterMetricFamily(
            "meshdns_sync_resyncs",
            "whole replications, by zone and direction, because the source's change log no "
            "longer held what followed the cursor (compacted, or lost in a failover)",
            labels=["zone", "direction"],
        )
        for direction, count in self._worker.resyncs.items():
            resyncs.add_metric([zone, direction], count)
        yield resyncs
        if stats.lag is not None:
            lag = GaugeMetricFamily(
                "meshdns_sync_lag_revisions",
                "source revisions not yet replicated, by zone and direction",
                labels=["zone", "direction"],
            )
            for direction, behind in stats.lag.items():
                lag.add_metric([zone, direction], behind)
            yield lag
        if stats.caught_up_at is not None:
            age = GaugeMetricFamily(
                "meshdns_sync_caught_up_age_seconds",
                "seconds since both directions were last caught up",
                labels=["zone"],
            )
            age.add_metric([zone], time.monotonic() - stats.caught_up_at)
            yield age


def serve_metrics(worker: SyncWorker, address: str, port: int) -> Any:
    """Start the metrics HTTP server (a thread); the server, for shutdown()."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SyncCollector(worker))
    ProcessCollector(namespace="meshdns", registry=registry)
    server, _ = start_http_server(port, addr=address, registry=registry)
    log.info("sync metrics on http://%s:%s/metrics", address, server.server_port)
    return server


async def measure_lag(worker: SyncWorker) -> None:
    """Keep ``worker.stats.lag`` current until cancelled."""
    while True:
        with contextlib.suppress(RegistryError):
            worker.stats.lag = await worker.lag()
        await asyncio.sleep(LAG_INTERVAL)
