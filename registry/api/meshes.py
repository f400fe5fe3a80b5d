"""Meshes at Kuma's paths: ``/meshes`` and ``/meshes/{mesh}`` (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from registry.api.reading import OffsetQuery, SizeQuery, fill_identity, read_document
from registry.api.rendering import listing, render
from registry.api.writes import Writes
from registry.errors import NotFound
from registry.schema import Mesh, parse_resource
from registry.store import Page, Store
from registry.write_rules import check_write


def meshes_router(store: Store, writes: Writes) -> APIRouter:
    """List, read, write and delete meshes; deleting one deletes its dataplanes too."""
    router = APIRouter()

    @router.get("/meshes")
    async def list_meshes(
        request: Request, size: int = SizeQuery, offset: int = OffsetQuery
    ) -> dict:
        page: Page = await store.list_meshes(size=size, offset=offset)
        return listing(request, page.total, [render(item) for item in page.items], size, offset)

    @router.get("/meshes/{mesh}")
    async def get_mesh(mesh: str) -> dict:
        return render(await store.get_mesh(mesh))

    @router.put("/meshes/{mesh}")
    async def put_mesh(mesh: str, request: Request) -> JSONResponse:
        document = fill_identity(await read_document(request), {"type": "Mesh", "name": mesh})
        resource = parse_resource(document)
        assert isinstance(resource, Mesh)
        check_write(store.mode, "Mesh")
        async with writes.transaction() as transaction:
            created = await store.put_in(transaction, resource)
        return JSONResponse({}, status_code=201 if created else 200)

    @router.delete("/meshes/{mesh}")
    async def delete_mesh(mesh: str) -> dict:
        check_write(store.mode, "Mesh")
        async with writes.transaction() as transaction:
            if not await store.delete_in(transaction, "Mesh", mesh, mesh):
                raise NotFound(f'mesh "{mesh}" not found')
        return {}

    return router
