"""The API agents speak, and Kuma's `dataplanes+insights` view of their liveness.

- ``POST /meshes/{mesh}/dataplanes/{name}/connect`` (body: the Dataplane): register it
  as the agent's and mark it online; answers the heartbeat interval and the DNS settings
  the agent's local server must use.
- ``POST .../heartbeat``: the agent is alive (404: not registered; connect again).
- ``POST .../disconnect``: the agent is leaving (SIGTERM); an agent-created dataplane is
  deleted at once, one created through the API is marked offline and kept.
- ``GET /meshes/{mesh}/dataplanes/{name}/dns-records?after=R&wait=S``: long poll for
  what that dataplane sees (as its control plane answers it in DNS) that changed after
  revision R (registry/agents/service_feed.py).
- ``GET /meshes/{mesh}/dns-records?after=R&wait=S``: the same for a client of the mesh
  that is no dataplane (what agents before the per-dataplane route follow).
- ``GET /meshes/{mesh}/dataplanes+insights[/{name}]``: dataplanes with their status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from registry.agents.liveness import Insight, Liveness
from registry.agents.service_feed import ServiceFeed
from registry.api.access import caller
from registry.api.reading import OffsetQuery, SizeQuery, read_dataplane, tag_filter
from registry.api.rendering import listing, render
from registry.auth.authorization import Guard
from registry.auth.scopes import Scope, requires
from registry.store import Store, Stored

MAX_WAIT = 300.0
CONNECT_WAIT = 1.0  # seconds a connect waits for this process's view to have it


def render_insight(insight: Insight | None) -> dict[str, Any]:
    """Kuma's dataplaneInsight, with meshdns's liveness fields beside its subscriptions."""
    if insight is None:
        return {"subscriptions": []}
    connected = insight.connected_at.isoformat()
    disconnected = insight.disconnected_at.isoformat() if insight.disconnected_at else None
    subscription: dict[str, Any] = {
        "connectTime": connected,
        "status": {"lastUpdateTime": insight.last_seen.isoformat()},
    }
    if disconnected:
        subscription["disconnectTime"] = disconnected
    return {
        "online": insight.online,
        "origin": insight.origin,
        "connectTime": connected,
        "disconnectTime": disconnected,
        "lastSeen": insight.last_seen.isoformat(),
        "subscriptions": [subscription],
    }


def render_overview(stored: Stored, insight: Insight | None) -> dict[str, Any]:
    """A DataplaneOverview as Kuma's `dataplanes+insights` shows it."""
    body = render(stored)
    head = {key: body.pop(key) for key in ("mesh", "name", "creationTime", "modificationTime")}
    body.pop("type", None)
    return {
        "type": "DataplaneOverview",
        **head,
        "dataplane": body,
        "dataplaneInsight": render_insight(insight),
    }


def agent_router(
    store: Store,
    liveness: Liveness,
    feed: ServiceFeed,
    agent_config: Mapping[str, Any],
    guard: Guard,
) -> APIRouter:
    """The routes above; `agent_config` is what a connecting agent is told to use, `guard`
    the API app's (a dataplane token acts only for dataplanes of its services)."""
    router = APIRouter()

    @router.post("/meshes/{mesh}/dataplanes/{name}/connect")
    @requires(Scope.DATAPLANE_WRITE)
    async def connect(mesh: str, name: str, request: Request) -> JSONResponse:
        dataplane = await read_dataplane(request, mesh, name)
        await guard.check_put(caller(request), dataplane)
        created = await liveness.connect(dataplane)
        # Its first records then show its own dataplane, seen as itself: answered once
        # this process's view has the registration (bounded, as other writes are).
        await feed.reached(await store.revision(), CONNECT_WAIT)
        # The agent's heartbeats start when it has this answer, which may come seconds
        # after the registration was written (a burst of them): alive until then.
        liveness.alive((mesh, name))
        return JSONResponse(
            {
                "heartbeatInterval": liveness.settings.heartbeat_interval,
                "revision": feed.snapshot.revision,
                **agent_config,
            },
            status_code=201 if created else 200,
        )

    @router.post("/meshes/{mesh}/dataplanes/{name}/heartbeat")
    @requires(Scope.DATAPLANE_WRITE)
    async def heartbeat(mesh: str, name: str, request: Request) -> Response:
        await guard.check_existing(
            caller(request), "Dataplane", mesh, name, "send heartbeats for", fast=True
        )
        await liveness.heartbeat((mesh, name))
        return Response(status_code=204)

    @router.post("/meshes/{mesh}/dataplanes/{name}/disconnect")
    @requires(Scope.DATAPLANE_WRITE)
    async def disconnect(mesh: str, name: str, request: Request) -> dict[str, Any]:
        await guard.check_existing(caller(request), "Dataplane", mesh, name, "disconnect")
        return {"deleted": await liveness.disconnect((mesh, name))}

    @router.get("/meshes/{mesh}/dataplanes/{name}/dns-records")
    @requires(Scope.MESH_RECORDS)
    async def dataplane_records(
        mesh: str,
        name: str,
        request: Request,
        after: int = Query(0, ge=0),
        wait: float = Query(0.0, ge=0.0, le=MAX_WAIT),
    ) -> Response:
        await guard.check_existing(
            caller(request), "Dataplane", mesh, name, "follow the DNS records of", fast=True
        )
        # Its agent asking is a sign of life, as a heartbeat is: an agent makes its first
        # records request before its first heartbeat, and under load that request may
        # take longer than the offline window.
        liveness.alive((mesh, name))
        body = await feed.since(mesh, after, wait, dataplane=name)
        if wait == 0:
            # Its first request (wait 0): the agent starts its heartbeats once answered.
            liveness.alive((mesh, name))
        feed.answers += 1
        return Response(body, media_type="application/json")

    @router.get("/meshes/{mesh}/dns-records")
    @requires(Scope.MESH_RECORDS)
    async def mesh_records(
        mesh: str,
        after: int = Query(0, ge=0),
        wait: float = Query(0.0, ge=0.0, le=MAX_WAIT),
    ) -> Response:
        body = await feed.since(mesh, after, wait)
        feed.answers += 1
        return Response(body, media_type="application/json")

    @router.get("/meshes/{mesh}/dataplanes+insights")
    async def list_overviews(
        request: Request,
        mesh: str,
        size: int = SizeQuery,
        offset: int = OffsetQuery,
        tag: list[str] = Query([]),  # noqa: B008 - FastAPI's way of declaring a repeated query
    ) -> dict[str, Any]:
        page = await store.list_dataplanes(mesh, size=size, offset=offset, tags=tag_filter(tag))
        insights = await liveness.insights(mesh, [item.resource.name for item in page.items])
        items = [render_overview(item, insights.get(item.resource.name)) for item in page.items]
        return listing(request, page.total, items, size, offset)

    @router.get("/meshes/{mesh}/dataplanes+insights/{name}")
    async def get_overview(mesh: str, name: str) -> dict[str, Any]:
        stored = await store.get_dataplane(mesh, name)
        insights = await liveness.insights(mesh, [name])
        return render_overview(stored, insights.get(name))

    return router
