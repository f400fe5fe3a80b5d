"""The HTTP API application: Kuma's resource paths and error shape over the registry
store, every route behind one authentication dependency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI

from registry.api.access import authentication
from registry.api.apply import apply_router
from registry.api.dataplanes import dataplanes_router
from registry.api.errors import add_error_handlers
from registry.api.meshes import meshes_router
from registry.api.openapi import complete_openapi
from registry.api.probes import probes_router
from registry.api.rendering import StatusOf
from registry.api.resources import resources_router
from registry.api.writes import OnChange, Writes
from registry.api.zones import zones_router
from registry.auth.authentication import Authenticator
from registry.auth.authorization import DataplaneKey, Guard
from registry.limits import BodyLimit
from registry.snapshot import IPAddress
from registry.store import Store


def create_app(
    store: Store,
    *,
    ready: Callable[[], dict[str, Any]] | None = None,
    on_change: OnChange | None = None,
    version: str = "0",
    zone: str | None = None,
    auth: Authenticator | None = None,
    known_services: Callable[[DataplaneKey], frozenset[str] | None] | None = None,
    meshes_at: Callable[[IPAddress], set[str]] | None = None,
    status_of: StatusOf | None = None,
) -> FastAPI:
    """The API application over `store`; `on_change` is awaited with the registry's
    revision after every committed write (`serve` uses it to answer only once its own DNS
    has the write). `status_of` gives the `status` shown with MeshServices and their kin
    (none without it).

    `auth` None: every request is admin. The app's `state.guard` checks what a caller may
    do; routers added later (registry/agents/routes.py) use it too.
    """
    guard = Guard(
        store, mode=store.mode, zone=zone, known_services=known_services, meshes_at=meshes_at
    )
    writes = Writes(store, on_change)
    app = FastAPI(
        title="meshdns",
        version=version,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(authentication(auth, guard))],
    )
    # 413 for a body over the limit, before it is read (registry/limits.py).
    app.add_middleware(BodyLimit)
    app.state.guard = guard
    add_error_handlers(app)
    app.include_router(probes_router(version, ready, mode=store.mode, zone=zone))
    app.include_router(meshes_router(store, writes))
    app.include_router(dataplanes_router(store, guard, writes, zone))
    app.include_router(apply_router(store, guard, writes))
    app.include_router(zones_router(store))
    app.include_router(resources_router(store, guard, writes, status_of))
    complete_openapi(app)
    return app
