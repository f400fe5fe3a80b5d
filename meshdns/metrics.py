"""`GET /metrics`: what `serve` is doing, in Prometheus's text format.

Nothing on the DNS path touches prometheus_client: the DNS server keeps plain integer
counts (dnsserver/counters.py) and this module's collector reads them, the answer
cache's counts, the snapshot and the API's request counts when Prometheus scrapes.
With `--dns-workers N` the counts are those of the serve process's DNS server only.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dnsserver.counters import LATENCY_BUCKETS, DnsCounters, by_label
from dnsserver.handler import Handler
from dnsserver.server import DnsServer
from registry.errors import RegistryError
from registry.feed.compaction import Compactor
from registry.feed.follower import RegistryFollower

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

# How long a scrape waits for the database's newest revision (the feed lag).
_HEAD_TIMEOUT = 1.0


class ApiRequestCounts:
    """ASGI middleware counting the API's requests by method, route (the path template,
    so names in paths make no new series) and status."""

    def __init__(self, app: Asgi, counts: dict[tuple[str, str, str], int]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception with nothing sent

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            key = (scope["method"], route, str(status))
            self.counts[key] = self.counts.get(key, 0) + 1


class ServeCollector(Collector):
    """Reads the state of one `serve` process as Prometheus metrics."""

    def __init__(
        self,
        *,
        dns: DnsServer,
        handler: Handler,
        follower: RegistryFollower,
        compactor: Compactor | None = None,
        api_counts: dict[tuple[str, str, str], int],
        version: str,
        mode: str,
        zone: str | None,
    ) -> None:
        self._dns = dns
        self._handler = handler
        self._compactor = compactor
        self._follower = follower
        self._api_counts = api_counts
        self._info = {
            "version": version,
            "python": sys.version.split()[0],
            "mode": mode,
            "zone": zone or "",
        }
        # The database's newest revision, read by the route just before a scrape.
        self.head_revision: int | None = None

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "meshdns_build_info", "meshdns's version, Python's, the mode", labels=list(self._info)
        )
        info.add_metric(list(self._info.values()), 1)
        yield info
        yield from _dns_metrics(self._dns.counters, self._dns.stats(), self._handler)
        yield from self._registry_metrics()
        requests = CounterMetricFamily(
            "meshdns_api_requests",
            "HTTP API requests by method, route and status",
            labels=["method", "route", "status"],
        )
        for labels, count in list(self._api_counts.items()):
            requests.add_metric(list(labels), count)
        yield requests

    def _registry_metrics(self) -> Iterator[Metric]:
        follower = self._follower
        revision = follower.revision or 0
        yield GaugeMetricFamily(
            "meshdns_snapshot_revision", "registry revision the DNS answers from", value=revision
        )
        if follower.current_at is not None:
            yield GaugeMetricFamily(
                "meshdns_snapshot_age_seconds",
                "seconds since the snapshot was last known to hold every committed change",
                value=time.monotonic() - follower.current_at,
            )
        yield CounterMetricFamily(
            "meshdns_snapshot_unreadable_rows",
            "stored rows left out of the snapshot because they could not be read (each "
            "logged once)",
            value=follower.unreadable_rows,
        )
        if self._compactor is not None:
            yield CounterMetricFamily(
                "meshdns_changes_compacted",
                "changes deleted from the change log by this process's compactions",
                value=self._compactor.removed,
            )
        reloads = CounterMetricFamily(
            "meshdns_feed_reloads",
            "full reads of the registry forced because the change log could not say what "
            "followed the snapshot (reason: compacted, ahead, diverged)",
            labels=["reason"],
        )
        for reason in ("compacted", "ahead", "diverged"):
            reloads.add_metric([reason], follower.reloads.get(reason, 0))
        yield reloads
        yield GaugeMetricFamily(
            "meshdns_feed_connected",
            "1 while the change feed reads the database",
            value=1 if follower.connected else 0,
        )
        if self.head_revision is not None:
            yield GaugeMetricFamily(
                "meshdns_feed_lag_revisions",
                "revisions committed to the registry and not yet in the snapshot",
                value=max(0, self.head_revision - revision),
            )
        snapshot = follower.view.snapshot
        yield GaugeMetricFamily("meshdns_meshes", "meshes", value=len(snapshot.meshes))
        services = GaugeMetricFamily(
            "meshdns_services", "services of this zone, by mesh", labels=["mesh"]
        )
        for mesh, view in snapshot.meshes.items():
            services.add_metric([mesh], len(view.services))
        yield services
        counts: dict[tuple[str, str], int] = {}
        for mesh in snapshot.meshes:
            counts[(mesh, "online")] = counts[(mesh, "offline")] = 0
        for state in follower.view.dataplanes():
            key = (state.mesh, "online" if state.online else "offline")
            counts[key] = counts.get(key, 0) + 1
        dataplanes = GaugeMetricFamily(
            "meshdns_dataplanes", "dataplanes by mesh and status", labels=["mesh", "status"]
        )
        for labels, count in counts.items():
            dataplanes.add_metric(list(labels), count)
        yield dataplanes


def _dns_metrics(
    counters: DnsCounters, stats: dict[str, int], handler: Handler
) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "meshdns_dns_requests",
        "DNS queries answered, by question type, reply rcode and transport",
        labels=["type", "rcode", "transport"],
    )
    replies, hits, misses = handler.counts()
    for line in by_label(replies):
        requests.add_metric([line.qtype, line.rcode, line.transport], line.count)
    yield requests
    unanswered = CounterMetricFamily(
        "meshdns_dns_unanswered",
        "DNS messages given no reply (responses, unreadable headers), by transport",
        labels=["transport"],
    )
    for tcp, count in counters.unanswered.items():
        unanswered.add_metric(["tcp" if tcp else "udp"], count)
    yield unanswered
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip(
        (*LATENCY_BUCKETS, float("inf")), counters.latency_buckets, strict=True
    ):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
    yield HistogramMetricFamily(
        "meshdns_dns_request_duration_seconds",
        "time to answer a DNS query in the server (one query in 64 is timed)",
        buckets=buckets,
        sum_value=counters.latency_sum,
    )
    yield CounterMetricFamily(
        "meshdns_dns_cache_hits", "replies served from the answer cache", value=hits
    )
    yield CounterMetricFamily(
        "meshdns_dns_cache_misses", "replies built by the full lookup path", value=misses
    )
    yield GaugeMetricFamily(
        "meshdns_dns_cache_entries", "keys in the answer cache", value=len(handler.cache)
    )
    limited = CounterMetricFamily(
        "meshdns_dns_rate_limited",
        "UDP queries over the rate limit: slipped (empty TC reply) or dropped",
        labels=["action"],
    )
    limited.add_metric(["slipped"], stats["udp_slipped"])
    limited.add_metric(["dropped"], stats["udp_dropped"])
    yield limited
    yield GaugeMetricFamily(
        "meshdns_dns_tcp_connections", "open DNS TCP connections", value=stats["tcp_connections"]
    )
    closed = CounterMetricFamily(
        "meshdns_dns_tcp_closed",
        "DNS TCP connections closed by the server, by reason",
        labels=["reason"],
    )
    closed.add_metric(["idle"], stats["tcp_closed_idle"])
    closed.add_metric(["room"], stats["tcp_closed_for_room"])
    closed.add_metric(["refused"], stats["tcp_refused"])
    yield closed


def add_metrics_route(
    app: FastAPI, collector: ServeCollector, head_revision: Callable[[], Awaitable[int]]
) -> None:
    """`GET /metrics` on ``app``: ``collector`` and the process's CPU and memory, in a
    registry of its own (prometheus_client's default one is global to the process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(namespace="meshdns", registry=registry)  # CPU, memory, open files

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        collector.head_revision = None
        with contextlib.suppress(RegistryError, TimeoutError):
            collector.head_revision = await asyncio.wait_for(head_revision(), _HEAD_TIMEOUT)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
