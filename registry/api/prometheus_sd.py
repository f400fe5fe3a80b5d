"""`GET /prometheus/sd[?mesh=M]`: the dataplanes' metrics endpoints for Prometheus's HTTP
service discovery (`http_sd_configs`), as Kuma's monitoring assignments (MADS) give them.

A dataplane is scraped where its `metrics` field says, as in Kuma:
``metrics: {type: prometheus, conf: {port: 5670, path: /metrics}}``; without one, where
its mesh's enabled metrics backend says (``metrics: {enabledBackend: prom, backends:
[{name: prom, type: prometheus, conf: {port: 5670, path: /metrics}}]}``); a dataplane with
neither is not listed. Kuma's defaults fill what the `conf` leaves out (port 5670, path
/metrics). The address is the dataplane's advertisedAddress, else its address.

One target group per dataplane, labelled ``mesh``, ``dataplane``, ``service`` (its first
inbound's ``kuma.io/service``), ``zone`` (the inbound tag ``kuma.io/zone``, else this
control plane's zone, else empty) and every inbound tag under a name Prometheus accepts
(``kuma.io/protocol`` → ``kuma_io_protocol``; of two inbounds, the first's value wins).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from ipaddress import IPv6Address, ip_address
from typing import Any

from fastapi import APIRouter, Query

from registry.errors import NotFound
from registry.schema import Dataplane, Mesh
from registry.store import Store

DEFAULT_METRICS_PORT = 5670  # Kuma's
DEFAULT_METRICS_PATH = "/metrics"
ZONE_TAG = "kuma.io/zone"
_PAGE = 1000
_INVALID_LABEL_CHARACTERS = re.compile(r"[^a-zA-Z0-9_]")


def label_name(tag: str) -> str:
    """A tag's name as a Prometheus label name: other characters become ``_``, and a
    leading digit gets one in front."""
    name = _INVALID_LABEL_CHARACTERS.sub("_", tag)
    return f"_{name}" if name[:1].isdigit() else name


def metrics_endpoint(dataplane: Dataplane, mesh: Mesh | None) -> tuple[int, str] | None:
    """The (port, path) a dataplane's metrics are scraped at, if it has any."""
    if dataplane.metrics is not None:
        conf = dataplane.metrics.get("conf") or {}
    else:
        conf = _mesh_backend(mesh)
        if conf is None:
            return None
    port, path = conf.get("port", DEFAULT_METRICS_PORT), conf.get("path", DEFAULT_METRICS_PATH)
    if not isinstance(port, int) or not 0 < port < 65536 or not isinstance(path, str):
        return None
    return port, path


def _mesh_backend(mesh: Mesh | None) -> dict[str, Any] | None:
    metrics = mesh.metrics if mesh is not None else None
    if not metrics or not metrics.get("enabledBackend"):
        return None
    for backend in metrics.get("backends") or ():
        if isinstance(backend, dict) and backend.get("name") == metrics["enabledBackend"]:
            conf = backend.get("conf") or {}
            return conf if isinstance(conf, dict) else None
    return None


def target_group(
    dataplane: Dataplane, endpoint: tuple[int, str], zone: str | None
) -> dict[str, Any]:
    """One dataplane's target group."""
    networking = dataplane.networking
    address = ip_address(networking.advertised_address or networking.address)
    host = f"[{address}]" if isinstance(address, IPv6Address) else str(address)
    port, path = endpoint
    tags: dict[str, str] = {}
    for inbound in networking.inbound:
        for key, value in inbound.tags.items():
            tags.setdefault(label_name(key), value)
    first = networking.inbound[0].tags if networking.inbound else {}
    labels = {
        **tags,
        "mesh": dataplane.mesh,
        "dataplane": dataplane.name,
        "service": first.get("kuma.io/service", ""),
        "zone": first.get(ZONE_TAG) or zone or "",
        "__metrics_path__": path,
    }
    return {"targets": [f"{host}:{port}"], "labels": labels}


def prometheus_sd_router(store: Store, zone: str | None = None) -> APIRouter:
    """The discovery route (read access, as the dataplane listings)."""
    router = APIRouter()

    @router.get("/prometheus/sd")
    async def prometheus_sd(mesh: str | None = Query(None)) -> list[dict[str, Any]]:  # noqa: B008
        groups = []
        for name in [mesh] if mesh is not None else [m async for m in _mesh_names(store)]:
            try:
                stored_mesh = (await store.get_mesh(name)).resource
            except NotFound:
                continue  # an unknown mesh has no dataplanes
            assert isinstance(stored_mesh, Mesh)
            async for dataplane in _dataplanes(store, name):
                endpoint = metrics_endpoint(dataplane, stored_mesh)
                if endpoint is not None:
                    groups.append(target_group(dataplane, endpoint, zone))
        return groups

    return router


async def _mesh_names(store: Store) -> AsyncIterator[str]:
    offset = 0
    while True:
        page = await store.list_meshes(size=_PAGE, offset=offset)
        for item in page.items:
            yield item.resource.name
        offset += _PAGE
        if offset >= page.total:
            return


async def _dataplanes(store: Store, mesh: str) -> AsyncIterator[Dataplane]:
    offset = 0
    while True:
        page = await store.list_dataplanes(mesh, size=_PAGE, offset=offset)
        for item in page.items:
            assert isinstance(item.resource, Dataplane)
            yield item.resource
        offset += _PAGE
        if offset >= page.total:
            return
