"""A mesh's dataplanes and services at Kuma's paths: ``/meshes/{mesh}/dataplanes[/{name}]``
(dataplane and zone tokens write the dataplanes they may) and ``/meshes/{mesh}/services``."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from registry.api.access import caller
from registry.api.reading import OffsetQuery, SizeQuery, read_dataplane, tag_filter
from registry.api.rendering import listing, render, render_service
from registry.api.writes import Writes
from registry.auth.authorization import Guard
from registry.auth.scopes import Scope, requires
from registry.errors import NotFound
from registry.store import Store
from registry.write_rules import check_write


def dataplanes_router(
    store: Store, guard: Guard, writes: Writes, zone: str | None = None
) -> APIRouter:
    """List (by tags), read, write and delete dataplanes, and list the services they make;
    `zone` names this control plane's own endpoints in a service's per-zone counts."""
    router = APIRouter()

    @router.get("/meshes/{mesh}/dataplanes")
    async def list_dataplanes(
        request: Request,
        mesh: str,
        size: int = SizeQuery,
        offset: int = OffsetQuery,
        tag: list[str] = Query([]),  # noqa: B008 - FastAPI's way of declaring a repeated query
    ) -> dict:
        page = await store.list_dataplanes(mesh, size=size, offset=offset, tags=tag_filter(tag))
        return listing(request, page.total, [render(item) for item in page.items], size, offset)

    @router.get("/meshes/{mesh}/dataplanes/{name}")
    async def get_dataplane(mesh: str, name: str) -> dict:
        return render(await store.get_dataplane(mesh, name))

    @router.put("/meshes/{mesh}/dataplanes/{name}")
    @requires(Scope.DATAPLANE_WRITE)
    async def put_dataplane(mesh: str, name: str, request: Request) -> JSONResponse:
        check_write(store.mode, "Dataplane")
        dataplane = await read_dataplane(request, mesh, name)
        await guard.check_put(caller(request), dataplane)
        async with writes.transaction() as transaction:
            created = await store.put_in(transaction, dataplane)
        return JSONResponse({}, status_code=201 if created else 200)

    @router.delete("/meshes/{mesh}/dataplanes/{name}")
    @requires(Scope.DATAPLANE_WRITE)
    async def delete_dataplane(mesh: str, name: str, request: Request) -> dict:
        check_write(store.mode, "Dataplane")
        await guard.check_existing(caller(request), "Dataplane", mesh, name, "delete")
        async with writes.transaction() as transaction:
            if not await store.delete_in(transaction, "Dataplane", mesh, name):
                raise NotFound(f'dataplane "{name}" not found in mesh "{mesh}"')
        return {}

    @router.get("/meshes/{mesh}/services")
    async def list_services(
        request: Request, mesh: str, size: int = SizeQuery, offset: int = OffsetQuery
    ) -> dict:
        services = await store.list_services(mesh)
        items = [
            render_service(mesh, service, zone) for service in services[offset : offset + size]
        ]
        return listing(request, len(services), items, size, offset)

    return router
