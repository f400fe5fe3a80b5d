"""The console's routes: server-rendered pages under ``/gui`` and the revision they poll.

Every page is complete HTML that works without JavaScript. With it, ``console.js`` asks
``/gui/api/version`` every half second and, when the registry's revision moves, fetches
the page again and swaps its ``<main>`` in place: a registration shows up without a
reload. Only GET routes: the console changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.params import Depends
from fastapi.responses import HTMLResponse, JSONResponse, Response

from meshdns.console import reads, views
from meshdns.console.dig import DnsAnswer
from meshdns.console.reads import InsightReader
from registry.errors import RegistryError
from registry.feed.view import RegistryView
from registry.snapshot import Snapshot
from registry.store import Store

PREFIX = "/gui"
SERVICES_PER_PAGE = 200
DESTINATIONS_PER_PAGE = 200
DATAPLANES_PER_PAGE = 200
_PAGE = Query(1, ge=1, alias="page")  # ?page=N of a long listing
_STATIC_TYPES = {"console.css": "text/css", "console.js": "text/javascript"}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("meshdns.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ago(when: datetime | None) -> str:
    """``when`` as a short age ("4 s ago"); the page says the absolute time beside it."""
    if when is None:
        return "never"
    seconds = max(0, int((datetime.now(UTC) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


_templates.filters["ago"] = _ago


def _static_files() -> dict[str, bytes]:
    folder = resources.files("meshdns.console") / "static"
    return {name: (folder / name).read_bytes() for name in _STATIC_TYPES}


def console_router(
    store: Store,
    snapshot: Callable[[], Snapshot],
    *,
    answer: DnsAnswer | None = None,
    insights: InsightReader,
    mode: str = "standalone",
    zone: str | None = None,
    dns_rate: Callable[[], float | None] | None = None,
    service_model: Callable[[], RegistryView] | None = None,
    dependencies: Sequence[Depends] = (),
) -> APIRouter:
    """The console's routes over ``store`` and the current ``snapshot()``.

    - ``answer``: the DNS answer to show for each service (see ``handler_answers``);
      without it the column is left out.
    - ``insights``: a reader of dataplanes' liveness, ``Liveness.insights`` of the
      serving process (it knows heartbeats not yet written).
    - ``mode`` and ``zone``: the control plane's ``--mode`` and ``--zone`` (the zones
      page exists on global and zone control planes only).
    - ``dns_rate``: DNS queries per second, shown on the overview when it gives a number.
    - ``service_model``: the registry view behind ``snapshot()`` (the follower's), for a
      mesh's MeshServices and their kin with their status; without it that page is left out.
    - ``dependencies``: applied to every route, e.g. the API's authentication.
    """
    # Route names start "console_": the API's authentication tells routes apart by name.
    router = APIRouter(prefix=PREFIX, dependencies=list(dependencies))
    static = _static_files()
    has_zones = mode in ("global", "zone")

    def page(
        request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        current = context.pop("snapshot", None) or snapshot()
        html = _templates.get_template(template).render(
            base=request.scope.get("root_path", "") + PREFIX,
            revision=current.revision,
            has_zones=has_zones,
            query=context.pop("query", ""),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def not_found(request: Request, what: str) -> HTMLResponse:
        return page(request, "missing.html", 404, what=what)

    def unavailable(request: Request, error: RegistryError) -> HTMLResponse:
        return page(request, "unavailable.html", 503, message=error.message)

    @router.get("", response_class=HTMLResponse, name="console_overview")
    async def overview(request: Request) -> HTMLResponse:
        current = snapshot()
        zone_counts = None
        if has_zones:
            try:
                rows = await reads.zones(store, current, mode, zone)
            except RegistryError:
                rows = None  # the rest of the overview comes from memory: show it anyway
            if rows is not None:
                zone_counts = views.Counts(
                    sum(row.status in ("Online", "Local", "Offering services") for row in rows),
                    sum(row.status in ("Offline", "Disabled") for row in rows),
                )
        rate = dns_rate() if dns_rate is not None else None
        return page(
            request,
            "overview.html",
            snapshot=current,
            meshes=views.overview(current),
            zone_counts=zone_counts,
            dns_rate=rate,
        )

    @router.get("/meshes/{mesh}", response_class=HTMLResponse, name="console_mesh")
    async def mesh_services(request: Request, mesh: str, page_number: int = _PAGE) -> HTMLResponse:
        current = snapshot()
        if mesh not in current.meshes:
            return not_found(request, f'mesh "{mesh}"')
        rows = views.services(current, mesh, zone)
        pages = max(1, math.ceil(len(rows) / SERVICES_PER_PAGE))
        number = min(page_number, pages)
        shown = rows[(number - 1) * SERVICES_PER_PAGE : number * SERVICES_PER_PAGE]
        return page(
            request,
            "mesh.html",
            snapshot=current,
            mesh=current.meshes[mesh],
            services=shown,
            total=len(rows),
            answers={row.name: _answer(answer, row) for row in shown},
            show_answers=answer is not None,
            show_vip6=any(row.vip6 for row in shown),
            show_model=service_model is not None,
            page_number=number,
            pages=pages,
        )

    @router.get(
        "/meshes/{mesh}/meshservices",
        response_class=HTMLResponse,
        name="console_mesh_services_model",
    )
    async def mesh_service_model(
        request: Request, mesh: str, page_number: int = _PAGE
    ) -> HTMLResponse:
        if service_model is None:
            return not_found(request, "service model page on this console")
        try:
            mode: str | None = await reads.mesh_services_mode(store, mesh)
        except RegistryError:
            mode = None  # the listing comes from memory: show it anyway
        # The snapshot and the view together, after the await: the view is the snapshot's.
        current, view = snapshot(), service_model()
        if mesh not in current.meshes:
            return not_found(request, f'mesh "{mesh}"')
        keys = views.destination_keys(view, mesh)
        pages = max(1, math.ceil(len(keys) / DESTINATIONS_PER_PAGE))
        number = min(page_number, pages)
        shown = keys[(number - 1) * DESTINATIONS_PER_PAGE : number * DESTINATIONS_PER_PAGE]
        rows = [row for key in shown if (row := views.destination(view, key[0], mesh, key[1]))]
        return page(
            request,
            "meshservices.html",
            snapshot=current,
            mesh=current.meshes[mesh],
            mode=mode,
            tables=[
                (kind, sum(k == kind for k, _ in keys), [row for row in rows if row.kind == kind])
                for kind in views.MODEL_KINDS
            ],
            total=len(keys),
            page_number=number,
            pages=pages,
        )

    @router.get(
        "/meshes/{mesh}/services/{service:path}",
        response_class=HTMLResponse,
        name="console_service",
    )
    async def service_dataplanes(
        request: Request, mesh: str, service: str, page_number: int = _PAGE
    ) -> HTMLResponse:
        current = snapshot()
        row = views.service(current, mesh, service, zone)
        if row is None:
            return not_found(request, f'service "{service}" in mesh "{mesh}"')
        try:
            found = await reads.service_dataplanes(
                store,
                insights,
                mesh,
                service,
                size=DATAPLANES_PER_PAGE,
                offset=(page_number - 1) * DATAPLANES_PER_PAGE,
            )
        except RegistryError as error:
            return unavailable(request, error)
        remote = current.meshes[mesh].remote.get(service)
        return page(
            request,
            "service.html",
            snapshot=current,
            service=row,
            dataplanes=found.rows,
            total=found.total,
            show_zone=any(item.zone for item in found.rows),
            remote_endpoints=remote.endpoints if remote else (),
            answer=_answer(answer, row),
            show_answers=answer is not None,
            page_number=page_number,
            pages=max(1, math.ceil(found.total / DATAPLANES_PER_PAGE)),
        )

    @router.get("/zones", response_class=HTMLResponse, name="console_zones")
    async def zone_list(request: Request) -> HTMLResponse:
        if not has_zones:
            return not_found(request, "zones (a standalone control plane has none)")
        current = snapshot()
        try:
            rows = await reads.zones(store, current, mode, zone)
        except RegistryError as error:
            return unavailable(request, error)
        return page(request, "zones.html", snapshot=current, zones=rows, mode=mode)

    @router.get("/search", response_class=HTMLResponse, name="console_search")
    async def search(request: Request, q: str = Query("", max_length=253)) -> HTMLResponse:
        current = snapshot()
        return page(
            request,
            "search.html",
            snapshot=current,
            query=q,
            hits=views.search(current, q, zone),
        )

    @router.get("/api/version", name="console_version")
    async def version() -> JSONResponse:
        """What the pages poll: the revision of the snapshot they are rendered from."""
        return JSONResponse({"revision": snapshot().revision})

    @router.get("/static/{name}", name="console_static")
    async def static_file(name: str) -> Response:
        body = static.get(name)
        if body is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(
            body, media_type=_STATIC_TYPES[name], headers={"Cache-Control": "max-age=300"}
        )

    return router


def _answer(answer: DnsAnswer | None, row: views.ServiceRow) -> list[str] | None:
    """The A answer, None where there is no single one to show (a cross-zone service)."""
    if answer is None or row.remote_only:
        return None
    return answer(row.mesh, row.name, "A")
