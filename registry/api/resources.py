"""The resources kept whole at Kuma's collection paths: ``/meshes/{mesh}/traffic-permissions
[/{name}]`` and the like for the mesh-scoped (Kuma's service model also at ``/meshservices``
and the like, listing every mesh), ``/zoneingresses[/{name}]`` and the like for the
others.

The service kinds (MeshService, MeshExternalService, MeshMultiZoneService) are shown with
the ``status`` Kuma computes for them (their VIP, hostnames and generators' conditions):
never stored, it comes from `status_of`, which answers it from the registry's view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from registry.api.access import caller
from registry.api.labels import with_computed_labels
from registry.api.reading import OffsetQuery, SizeQuery, fill_identity, read_document
from registry.api.rendering import StatusOf, listing, render
from registry.api.writes import Writes
from registry.auth.authorization import Guard
from registry.auth.scopes import Scope, requires
from registry.errors import NotFound
from registry.schema import MeshScoped, Resource, parse_resource
from registry.store import Store, Stored
from registry.store.kept_whole import SERVICE_KINDS, missing
from registry.write_rules import check_write


@dataclass(frozen=True, slots=True)
class Collection:
    """A resource type at its collection path, and who besides an admin writes it.

    `across_meshes`: a mesh-scoped collection also listed at ``/<collection>``, with the
    resources of every mesh."""

    kind: str
    mesh_scoped: bool
    writers: Scope = Scope.ADMIN
    across_meshes: bool = False


_Handler = Callable[..., Any]
# Kuma's collection paths of the resources kept whole.
COLLECTIONS = {
    "traffic-permissions": Collection("TrafficPermission", mesh_scoped=True),
    "zoneingresses": Collection("ZoneIngress", mesh_scoped=False, writers=Scope.ZONE_WRITE),
    "zoneegresses": Collection("ZoneEgress", mesh_scoped=False, writers=Scope.ZONE_WRITE),
    "zones": Collection("Zone", mesh_scoped=False),
    "meshservices": Collection("MeshService", mesh_scoped=True, across_meshes=True),
    "meshexternalservices": Collection("MeshExternalService", mesh_scoped=True, across_meshes=True),
    "meshmultizoneservices": Collection(
        "MeshMultiZoneService", mesh_scoped=True, across_meshes=True
    ),
    "meshtrafficpermissions": Collection(
        "MeshTrafficPermission", mesh_scoped=True, across_meshes=True
    ),
    "hostnamegenerators": Collection("HostnameGenerator", mesh_scoped=False),
}


class _KeptWhole:
    """What the routes of every collection do, given the resource type (and its mesh)."""

    def __init__(
        self, store: Store, guard: Guard, writes: Writes, status_of: StatusOf | None
    ) -> None:
        self.store = store
        self.guard = guard
        self.writes = writes
        self.status_of = status_of

    def render(self, stored: Stored) -> dict[str, Any]:
        """A stored resource as Kuma shows it, a service kind's with its status."""
        body = render(stored)
        resource = stored.resource
        if self.status_of is not None and resource.type in SERVICE_KINDS:
            assert isinstance(resource, MeshScoped)
            status = self.status_of(resource.type, resource.mesh, resource.name)
            if status is not None:
                body["status"] = status
        return body

    async def list(
        self, kind: str, mesh: str | None, request: Request, size: int, offset: int
    ) -> dict:
        page = await self.store.list_resources(kind, mesh, size=size, offset=offset)
        items = [self.render(item) for item in page.items]
        return listing(request, page.total, items, size, offset)

    async def get(self, kind: str, mesh: str | None, name: str) -> dict:
        return self.render(await self.store.get_resource(kind, mesh or "", name))

    async def put(self, kind: str, mesh: str | None, name: str, request: Request) -> JSONResponse:
        check_write(self.store.mode, kind)
        expected = {"type": kind, "name": name} | ({"mesh": mesh} if mesh is not None else {})
        resource: Resource = parse_resource(fill_identity(await read_document(request), expected))
        resource = with_computed_labels(resource, self.store.mode, self.guard.zone)
        await self.guard.check_put(caller(request), resource)
        async with self.writes.transaction() as transaction:
            created = await self.store.put_in(transaction, resource)
        return JSONResponse({}, status_code=201 if created else 200)

    async def delete(self, kind: str, mesh: str | None, name: str, request: Request) -> dict:
        check_write(self.store.mode, kind)
        await self.guard.check_existing(caller(request), kind, mesh or "", name, "delete")
        async with self.writes.transaction() as transaction:
            if not await self.store.delete_in(transaction, kind, mesh or "", name):
                raise NotFound(missing(kind, mesh or "", name))
        return {}


def resources_router(
    store: Store, guard: Guard, writes: Writes, status_of: StatusOf | None = None
) -> APIRouter:
    """GET (one and all), PUT and DELETE of each collection in COLLECTIONS."""
    router = APIRouter()
    kept_whole = _KeptWhole(store, guard, writes, status_of)
    for name, collection in COLLECTIONS.items():
        _add_routes(router, name, collection, kept_whole)
    return router


def _add_routes(
    router: APIRouter, collection: str, spec: Collection, kept_whole: _KeptWhole
) -> None:
    """GET (one and all), PUT and DELETE of one collection, at Kuma's paths."""
    kind = spec.kind
    if spec.mesh_scoped:
        path = f"/meshes/{{mesh}}/{collection}"

        async def list_in_mesh(
            request: Request, mesh: str, size: int = SizeQuery, offset: int = OffsetQuery
        ) -> dict:
            return await kept_whole.list(kind, mesh, request, size, offset)

        async def get_in_mesh(mesh: str, name: str) -> dict:
            return await kept_whole.get(kind, mesh, name)

        async def put_in_mesh(mesh: str, name: str, request: Request) -> JSONResponse:
            return await kept_whole.put(kind, mesh, name, request)

        async def delete_in_mesh(mesh: str, name: str, request: Request) -> dict:
            return await kept_whole.delete(kind, mesh, name, request)

        _register(
            router, path, collection, spec, list_in_mesh, get_in_mesh, put_in_mesh, delete_in_mesh
        )
        if spec.across_meshes:

            async def list_every_mesh(
                request: Request, size: int = SizeQuery, offset: int = OffsetQuery
            ) -> dict:
                return await kept_whole.list(kind, None, request, size, offset)

            router.get(f"/{collection}", name=f"list {collection} of every mesh")(list_every_mesh)
    else:
        path = f"/{collection}"

        async def list_all(
            request: Request, size: int = SizeQuery, offset: int = OffsetQuery
        ) -> dict:
            return await kept_whole.list(kind, None, request, size, offset)

        async def get_one(name: str) -> dict:
            return await kept_whole.get(kind, None, name)

        async def put_one(name: str, request: Request) -> JSONResponse:
            return await kept_whole.put(kind, None, name, request)

        async def delete_one(name: str, request: Request) -> dict:
            return await kept_whole.delete(kind, None, name, request)

        _register(router, path, collection, spec, list_all, get_one, put_one, delete_one)


def _register(
    router: APIRouter,
    path: str,
    collection: str,
    spec: Collection,
    list_handler: _Handler,
    get_handler: _Handler,
    put_handler: _Handler,
    delete_handler: _Handler,
) -> None:
    """The four routes of a collection, by the names its operations have always had; the
    writes declare the collection's writers."""
    kind = spec.kind
    router.get(path, name=f"list {collection}")(list_handler)
    router.get(f"{path}/{{name}}", name=f"get {kind}")(get_handler)
    router.put(f"{path}/{{name}}", name=f"put {kind}")(requires(spec.writers)(put_handler))
    router.delete(f"{path}/{{name}}", name=f"delete {kind}")(requires(spec.writers)(delete_handler))
