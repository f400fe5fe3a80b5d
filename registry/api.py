"""The HTTP API: Kuma's resource paths and error shape over the registry store."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from registry.errors import (
    Cause,
    Conflict,
    DatabaseUnavailable,
    InvalidResource,
    NotFound,
    RegistryError,
    VipPoolExhausted,
)
from registry.schema import Dataplane, Mesh, field_path, identity, parse_resource, parse_resources
from registry.store import Page, ServiceSummary, Store, Stored

log = logging.getLogger("meshdns.api")

MAX_PAGE_SIZE = 1000
_STATUS: dict[type[RegistryError], tuple[int, str]] = {
    InvalidResource: (400, "Bad Request"),
    NotFound: (404, "Not Found"),
    Conflict: (409, "Conflict"),
    VipPoolExhausted: (409, "Conflict"),
    DatabaseUnavailable: (503, "Service Unavailable"),
}


def error_body(title: str, details: str, causes: list[Cause] | None = None) -> dict[str, Any]:
    """Kuma's error shape."""
    return {
        "title": title,
        "details": details,
        "causes": [{"field": cause.field, "message": cause.message} for cause in causes or []],
    }


def _registry_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RegistryError)
    status, title = next(
        (value for kind, value in _STATUS.items() if isinstance(error, kind)),
        (500, "Internal Server Error"),
    )
    causes = error.causes if isinstance(error, InvalidResource) else None
    if status == 503:
        log.warning("answered 503: %s", error.message)
    return JSONResponse(error_body(title, error.message, causes), status_code=status)


def _request_invalid(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    causes = [
        Cause(field_path(item["loc"][1:]) or str(item["loc"][0]), item["msg"])
        for item in error.errors()
    ]
    return JSONResponse(error_body("Bad Request", "Request is not valid", causes), status_code=400)


def _unexpected(_: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error answering an API request")
    return JSONResponse(
        error_body("Internal Server Error", f"{type(error).__name__}: {error}"), status_code=500
    )


async def read_document(request: Request) -> Any:
    """Parse a request body as JSON or YAML (YAML also reads JSON)."""
    body = await request.body()
    if not body.strip():
        raise InvalidResource("Request body is empty", [Cause("(body)", "a resource is required")])
    try:
        if "json" in request.headers.get("content-type", ""):
            return json.loads(body)
        return yaml.safe_load(body)
    except (ValueError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidResource(
            "Request body is neither valid JSON nor YAML", [Cause("(body)", reason)]
        ) from None


def _fill_identity(document: Any, expected: dict[str, str]) -> Any:
    """Take type, mesh and name from the URL, refusing a body that names others."""
    if not isinstance(document, dict):
        return document
    causes = [
        Cause(key, f"must be {value!r} as in the URL, not {document[key]!r}")
        for key, value in expected.items()
        if key in document and document[key] != value
    ]
    if causes:
        raise InvalidResource("Resource does not match the URL", causes)
    return {**expected, **document}


async def read_dataplane(request: Request, mesh: str, name: str) -> Dataplane:
    """The Dataplane a request body describes, at the mesh and name of its URL."""
    document = _fill_identity(
        await read_document(request), {"type": "Dataplane", "mesh": mesh, "name": name}
    )
    resource = parse_resource(document)
    assert isinstance(resource, Dataplane)
    return resource


def render(stored: Stored) -> dict[str, Any]:
    """A stored resource as Kuma's API shows it."""
    body = stored.resource.dump()
    head: dict[str, Any] = {key: body.pop(key) for key in ("type", "mesh", "name") if key in body}
    return {
        **head,
        "creationTime": stored.creation_time.isoformat(),
        "modificationTime": stored.modification_time.isoformat(),
        **body,
    }


def render_service(mesh: str, service: ServiceSummary) -> dict[str, Any]:
    return {
        "type": "Service",
        "mesh": mesh,
        "name": service.name,
        "vip": str(service.vip) if service.vip else None,
        "vip6": str(service.vip6) if service.vip6 else None,
        "endpoints": service.endpoints,
        "dataplanes": service.dataplanes,
    }


def _listing(request: Request, total: int, items: list[Any], size: int, offset: int) -> dict:
    following = offset + size
    next_url = (
        str(request.url.include_query_params(offset=following, size=size))
        if following < total
        else None
    )
    return {"total": total, "items": items, "next": next_url}


def _tag_filter(tags: list[str]) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for index, tag in enumerate(tags):
        key, sep, value = tag.partition(":")
        if not sep or not key:
            raise InvalidResource(
                "Request is not valid", [Cause(f"tag[{index}]", f"{tag!r} is not key:value")]
            )
        wanted[key] = value
    return wanted


SizeQuery = Query(100, ge=1, le=MAX_PAGE_SIZE)
OffsetQuery = Query(0, ge=0)


def create_app(
    store: Store,
    *,
    ready: Callable[[], dict[str, Any]] | None = None,
    on_change: Callable[[], Awaitable[None]] | None = None,
    version: str = "0",
) -> FastAPI:
    """The API application over `store`; `on_change` is awaited after every committed write
    (`serve` uses it to answer only once its own DNS has the write)."""
    app = FastAPI(title="meshdns", version=version, docs_url=None, redoc_url=None)
    app.add_exception_handler(RegistryError, _registry_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(Exception, _unexpected)

    async def changed() -> None:
        if on_change is not None:
            await on_change()

    @app.get("/")
    async def index() -> dict[str, Any]:
        return {"tagline": "meshdns", "version": version}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        state = ready() if ready is not None else {"ready": True}
        return JSONResponse(state, status_code=200 if state.get("ready") else 503)

    @app.get("/meshes")
    async def list_meshes(
        request: Request, size: int = SizeQuery, offset: int = OffsetQuery
    ) -> dict:
        page: Page = await store.list_meshes(size=size, offset=offset)
        return _listing(request, page.total, [render(item) for item in page.items], size, offset)

    @app.get("/meshes/{mesh}")
    async def get_mesh(mesh: str) -> dict:
        return render(await store.get_mesh(mesh))

    @app.put("/meshes/{mesh}")
    async def put_mesh(mesh: str, request: Request) -> JSONResponse:
        document = _fill_identity(await read_document(request), {"type": "Mesh", "name": mesh})
        resource = parse_resource(document)
        assert isinstance(resource, Mesh)
        created = await store.put(resource)
        await changed()
        return JSONResponse({}, status_code=201 if created else 200)

    @app.delete("/meshes/{mesh}")
    async def delete_mesh(mesh: str) -> dict:
        await store.delete_mesh(mesh)
        await changed()
        return {}

    @app.get("/meshes/{mesh}/dataplanes")
    async def list_dataplanes(
        request: Request,
        mesh: str,
        size: int = SizeQuery,
        offset: int = OffsetQuery,
        tag: list[str] = Query([]),  # noqa: B008 - FastAPI's way of declaring a repeated query
    ) -> dict:
        page = await store.list_dataplanes(mesh, size=size, offset=offset, tags=_tag_filter(tag))
        return _listing(request, page.total, [render(item) for item in page.items], size, offset)

    @app.get("/meshes/{mesh}/dataplanes/{name}")
    async def get_dataplane(mesh: str, name: str) -> dict:
        return render(await store.get_dataplane(mesh, name))

    @app.put("/meshes/{mesh}/dataplanes/{name}")
    async def put_dataplane(mesh: str, name: str, request: Request) -> JSONResponse:
        created = await store.put(await read_dataplane(request, mesh, name))
        await changed()
        return JSONResponse({}, status_code=201 if created else 200)

    @app.delete("/meshes/{mesh}/dataplanes/{name}")
    async def delete_dataplane(mesh: str, name: str) -> dict:
        await store.delete_dataplane(mesh, name)
        await changed()
        return {}

    @app.get("/meshes/{mesh}/services")
    async def list_services(
        request: Request, mesh: str, size: int = SizeQuery, offset: int = OffsetQuery
    ) -> dict:
        services = await store.list_services(mesh)
        items = [render_service(mesh, service) for service in services[offset : offset + size]]
        return _listing(request, len(services), items, size, offset)

    @app.post("/apply")
    async def apply(request: Request) -> dict:
        """Write many resources in one transaction: all of them or none (for `meshdns apply`)."""
        document = await read_document(request)
        items = document.get("items") if isinstance(document, dict) else None
        if not isinstance(items, list) or not items:
            raise InvalidResource(
                "Request is not valid", [Cause("items", "a non-empty list of resources")]
            )
        resources = parse_resources(items)
        created = await store.put_many(resources)
        await changed()
        return {
            "items": [
                {**identity(resource), "status": "Created" if new else "Updated"}
                for resource, new in zip(resources, created, strict=True)
            ]
        }

    @app.get("/zones")
    async def list_zones(request: Request) -> dict:
        # Zones exist on a global control plane (multi-zone comes later); standalone has none.
        return _listing(request, 0, [], 100, 0)

    return app
