"""The HTTP API: Kuma's resource paths and error shape over the registry store."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from registry.auth import (
    ADMIN_IDENTITY,
    PUBLIC_ROUTES,
    Authenticator,
    DataplaneKey,
    Forbidden,
    Guard,
    Identity,
    Unauthenticated,
)
from registry.documents import DocumentError, load_json, load_yaml
from registry.errors import (
    Cause,
    Conflict,
    DatabaseUnavailable,
    InvalidResource,
    NotFound,
    ReadOnly,
    RegistryError,
    VipPoolExhausted,
)
from registry.limits import BodyLimit
from registry.models import NAME_LENGTH
from registry.schema import (
    Dataplane,
    Mesh,
    Resource,
    field_path,
    identity,
    parse_resource,
    parse_resources,
    resource_name_problem,
)
from registry.snapshot import IPAddress
from registry.store import Page, ServiceSummary, Store, Stored
from registry.write_rules import check_write

log = logging.getLogger("meshdns.api")

MAX_PAGE_SIZE = 1000
_STATUS: dict[type[RegistryError], tuple[int, str]] = {
    InvalidResource: (400, "Bad Request"),
    Unauthenticated: (401, "Unauthorized"),
    Forbidden: (403, "Forbidden"),
    NotFound: (404, "Not Found"),
    ReadOnly: (405, "Method Not Allowed"),
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
    # RFC 6750: a 401 names the scheme the client must use.
    headers = {"WWW-Authenticate": 'Bearer realm="meshdns"'} if status == 401 else None
    return JSONResponse(
        error_body(title, error.message, causes), status_code=status, headers=headers
    )


def _request_invalid(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    causes = [
        Cause(field_path(item["loc"][1:]) or str(item["loc"][0]), item["msg"])
        for item in error.errors()
    ]
    return JSONResponse(error_body("Bad Request", "Request is not valid", causes), status_code=400)


def _unexpected(_: Request, error: Exception) -> JSONResponse:
    log.error("unexpected error answering an API request", exc_info=error)
    return JSONResponse(
        error_body("Internal Server Error", f"{type(error).__name__}: {error}"), status_code=500
    )


async def read_document(request: Request) -> Any:
    """Parse a request body as JSON or YAML (YAML also reads JSON); a key given twice in
    one mapping is an error, as kubectl makes it."""
    body = await request.body()
    if not body.strip():
        raise InvalidResource("Request body is empty", [Cause("(body)", "a resource is required")])
    try:
        if "json" in request.headers.get("content-type", ""):
            return load_json(body)
        return load_yaml(body)
    except DocumentError as error:
        raise InvalidResource(
            "Request body is neither valid JSON nor YAML", [Cause("(body)", error.message)]
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


# Kuma's collection paths of the resources kept whole: (type, mesh-scoped).
_COLLECTIONS = {
    "traffic-permissions": ("TrafficPermission", True),
    "zoneingresses": ("ZoneIngress", False),
    "zoneegresses": ("ZoneEgress", False),
    "zones": ("Zone", False),
}
# A zone is online while its sync worker has been in touch this recently.
ZONE_OFFLINE_AFTER = 30.0


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


def render_service(
    mesh: str, service: ServiceSummary, local_zone: str | None = None
) -> dict[str, Any]:
    """A service as `GET /meshes/{mesh}/services` lists it; ``zones`` are its endpoints by
    zone, this control plane's own under its zone's name (standalone: "local")."""
    return {
        "type": "Service",
        "mesh": mesh,
        "name": service.name,
        "vip": str(service.vip) if service.vip else None,
        "vip6": str(service.vip6) if service.vip6 else None,
        "endpoints": service.endpoints,
        "dataplanes": service.dataplanes,
        "zones": {
            (zone if zone is not None else local_zone or "local"): count
            for zone, count in sorted(service.zones.items(), key=lambda item: item[0] or "")
        },
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
        if not sep or not key or "\x00" in tag:
            raise InvalidResource(
                "Request is not valid", [Cause(f"tag[{index}]", f"{tag!r} is not key:value")]
            )
        wanted[key] = value
    return wanted


# Path parameters that name resources: refused unless they are a name a resource can have.
_NAME_PARAMS = ("mesh", "name")


def _check_path_names(params: dict[str, Any]) -> None:
    """Names in the path must be names a resource can have: anything else (``..``, a NUL,
    which Postgres cannot even hold in text, a 10 kB string) is refused with 400 before a
    handler acts on it."""
    for key in _NAME_PARAMS:
        value = params.get(key)
        if not isinstance(value, str):
            continue
        problem: str | None
        if "\x00" in value or len(value) > NAME_LENGTH:
            problem = f"no resource is named so (at most {NAME_LENGTH} characters, no NUL)"
        else:
            problem = resource_name_problem(value)
        if problem is not None:
            raise InvalidResource(
                "Request is not valid", [Cause(key, f"{_shown_name(value)} {problem}")]
            )


def _shown_name(value: str) -> str:
    return repr(value) if len(value) <= 48 else f"{value[:40]!r}... ({len(value)} characters)"


def caller(request: Request) -> Identity:
    """Who the request acts as (set by the app's authentication dependency)."""
    who: Identity = request.state.identity
    return who


SizeQuery = Query(100, ge=1, le=MAX_PAGE_SIZE)
# The databases count rows in signed 64 bits.
OffsetQuery = Query(0, ge=0, le=2**63 - 1)


def create_app(
    store: Store,
    *,
    ready: Callable[[], dict[str, Any]] | None = None,
    on_change: Callable[[], Awaitable[None]] | None = None,
    version: str = "0",
    zone: str | None = None,
    auth: Authenticator | None = None,
    known_services: Callable[[DataplaneKey], frozenset[str] | None] | None = None,
    meshes_at: Callable[[IPAddress], set[str]] | None = None,
) -> FastAPI:
    """The API application over `store`; `on_change` is awaited after every committed write
    (`serve` uses it to answer only once its own DNS has the write).

    `auth` None: every request is admin. The app's `state.guard` checks what a caller may
    do; routers added later (registry/agents/routes.py) use it too.
    """
    mode = store.mode  # what this control plane may write (registry/write_rules.py)
    guard = Guard(store, mode=mode, zone=zone, known_services=known_services, meshes_at=meshes_at)

    async def authenticate(request: Request) -> None:
        # Runs before every route's own parameters: an unauthenticated request learns
        # nothing, not even that its body was invalid.
        route = getattr(request.scope.get("route"), "name", "")
        if route in PUBLIC_ROUTES:
            return
        who = ADMIN_IDENTITY
        if auth is not None:
            client = request.client.host if request.client else None
            who = await auth.identify(client, request.headers.get("authorization"))
        _check_path_names(request.path_params)
        guard.check_route(who, route, request.method, request.url.path, request.path_params)
        request.state.identity = who

    app = FastAPI(
        title="meshdns",
        version=version,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(authenticate)],
    )
    # 413 for a body over the limit, before it is read (registry/limits.py).
    app.add_middleware(BodyLimit)
    app.state.guard = guard
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
        check_write(mode, "Mesh")
        created = await store.put(resource)
        await changed()
        return JSONResponse({}, status_code=201 if created else 200)

    @app.delete("/meshes/{mesh}")
    async def delete_mesh(mesh: str) -> dict:
        check_write(mode, "Mesh")
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
        check_write(mode, "Dataplane")
        dataplane = await read_dataplane(request, mesh, name)
        await guard.check_put(caller(request), dataplane)
        created = await store.put(dataplane)
        await changed()
        return JSONResponse({}, status_code=201 if created else 200)

    @app.delete("/meshes/{mesh}/dataplanes/{name}")
    async def delete_dataplane(mesh: str, name: str, request: Request) -> dict:
        check_write(mode, "Dataplane")
        await guard.check_existing(caller(request), "Dataplane", mesh, name, "delete")
        await store.delete_dataplane(mesh, name)
        await changed()
        return {}

    @app.get("/meshes/{mesh}/services")
    async def list_services(
        request: Request, mesh: str, size: int = SizeQuery, offset: int = OffsetQuery
    ) -> dict:
        services = await store.list_services(mesh)
        items = [
            render_service(mesh, service, zone) for service in services[offset : offset + size]
        ]
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
        for index, resource in enumerate(resources):
            store.check_addresses(resource, where=f"items[{index}].")
        who = caller(request)
        for index, resource in enumerate(resources):
            await guard.check_put(who, resource, where=f"items[{index}]: ")
        for resource in resources:
            check_write(mode, resource.type)
        created = await store.put_many(resources)
        await changed()
        return {
            "items": [
                {**identity(resource), "status": "Created" if new else "Updated"}
                for resource, new in zip(resources, created, strict=True)
            ]
        }

    async def put_resource(
        kind: str, mesh: str | None, name: str, request: Request
    ) -> JSONResponse:
        check_write(mode, kind)
        expected = {"type": kind, "name": name} | ({"mesh": mesh} if mesh is not None else {})
        resource: Resource = parse_resource(_fill_identity(await read_document(request), expected))
        await guard.check_put(caller(request), resource)
        created = await store.put(resource)
        await changed()
        return JSONResponse({}, status_code=201 if created else 200)

    async def delete_resource(kind: str, mesh: str | None, name: str, request: Request) -> dict:
        check_write(mode, kind)
        await guard.check_existing(caller(request), kind, mesh or "", name, "delete")
        await store.delete_resource(kind, mesh or "", name)
        await changed()
        return {}

    async def list_resources(
        kind: str, mesh: str | None, request: Request, size: int, offset: int
    ) -> dict:
        page = await store.list_resources(kind, mesh, size=size, offset=offset)
        return _listing(request, page.total, [render(item) for item in page.items], size, offset)

    @app.get("/zones+insights")
    async def zones_with_insights(
        request: Request, size: int = SizeQuery, offset: int = OffsetQuery
    ) -> dict:
        page = await store.list_resources("Zone", None, size=size, offset=offset)
        contacts = await store.zone_contacts()
        items = [
            {
                **render(item),
                "enabled": getattr(item.resource, "enabled", True),
                **_zone_status(contacts.get(item.resource.name)),
            }
            for item in page.items
        ]
        return _listing(request, page.total, items, size, offset)

    @app.get("/status/zones")
    async def zone_status() -> list[dict[str, Any]]:
        """Kuma's shape: each zone and whether its sync worker is in touch."""
        contacts = await store.zone_contacts()
        return [
            {"name": name, "active": _zone_status(seen)["status"] == "Online"}
            for name, seen in sorted(contacts.items())
        ]

    for collection, (kind, mesh_scoped) in _COLLECTIONS.items():
        _add_routes(
            app, collection, kind, mesh_scoped, put_resource, delete_resource, list_resources, store
        )

    _document_answers(app)
    return app


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["title", "details", "causes"],
    "properties": {
        "title": {"type": "string"},
        "details": {"type": "string"},
        "causes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
# What every route may answer besides its own result (Kuma's error shape throughout).
_ERRORS = {
    "400": "invalid input",
    "401": "no valid bearer token",
    "403": "the token's scope does not allow this",
    "404": "not found",
    "413": "request body over the limit",
    "503": "the registry database is unreachable",
}
_WRITE_ERRORS = {"405": "this control plane's mode does not take it", "409": "conflict"}
_RESOURCE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "application/yaml": {"schema": {"type": "string"}},
    },
}


def _document_answers(app: FastAPI) -> None:
    """Complete the OpenAPI document FastAPI makes: the bodies the routes read themselves,
    and every status they answer (201 for a created resource, errors in Kuma's shape;
    no 422, which the API never answers)."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = make()
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
        error = {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                errors = dict(_ERRORS)
                if method in ("put", "post", "delete"):
                    errors.update(_WRITE_ERRORS)
                if method in ("put", "post") and "requestBody" not in operation:
                    operation["requestBody"] = _RESOURCE_BODY
                if method == "put":
                    responses["201"] = {"description": "created"}
                shape = error
                if path == "/readyz":
                    errors = {"503": "not ready"}
                    shape = {"content": {"application/json": {"schema": {"type": "object"}}}}
                for status, description in errors.items():
                    responses.setdefault(status, {"description": description, **shape})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _zone_status(last_seen: datetime | None) -> dict[str, Any]:
    online = (
        last_seen is not None
        and (datetime.now(UTC) - last_seen).total_seconds() < ZONE_OFFLINE_AFTER
    )
    return {
        "status": "Online" if online else "Offline",
        "lastSeen": last_seen.isoformat() if last_seen else None,
    }


def _add_routes(
    app: FastAPI,
    collection: str,
    kind: str,
    mesh_scoped: bool,
    put: Callable[..., Awaitable[JSONResponse]],
    delete: Callable[..., Awaitable[dict]],
    listing: Callable[..., Awaitable[dict]],
    store: Store,
) -> None:
    """GET (one and all), PUT and DELETE of a resource kept whole, at Kuma's paths."""
    if mesh_scoped:
        path = f"/meshes/{{mesh}}/{collection}"

        async def list_in_mesh(
            request: Request, mesh: str, size: int = SizeQuery, offset: int = OffsetQuery
        ) -> dict:
            return await listing(kind, mesh, request, size, offset)

        async def get_in_mesh(mesh: str, name: str) -> dict:
            return render(await store.get_resource(kind, mesh, name))

        async def put_in_mesh(mesh: str, name: str, request: Request) -> JSONResponse:
            return await put(kind, mesh, name, request)

        async def delete_in_mesh(mesh: str, name: str, request: Request) -> dict:
            return await delete(kind, mesh, name, request)

        handlers: tuple[Callable[..., Any], ...] = (
            list_in_mesh,
            get_in_mesh,
            put_in_mesh,
            delete_in_mesh,
        )
    else:
        path = f"/{collection}"

        async def list_all(
            request: Request, size: int = SizeQuery, offset: int = OffsetQuery
        ) -> dict:
            return await listing(kind, None, request, size, offset)

        async def get_one(name: str) -> dict:
            return render(await store.get_resource(kind, "", name))

        async def put_one(name: str, request: Request) -> JSONResponse:
            return await put(kind, None, name, request)

        async def delete_one(name: str, request: Request) -> dict:
            return await delete(kind, None, name, request)

        handlers = (list_all, get_one, put_one, delete_one)
    list_handler, get_handler, put_handler, delete_handler = handlers
    app.get(path, name=f"list {collection}")(list_handler)
    app.get(f"{path}/{{name}}", name=f"get {kind}")(get_handler)
    app.put(f"{path}/{{name}}", name=f"put {kind}")(put_handler)
    app.delete(f"{path}/{{name}}", name=f"delete {kind}")(delete_handler)
