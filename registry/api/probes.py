"""The API's own routes: what it is (``/``), whether it lives (``/healthz``) and whether
it is ready to answer (``/readyz``); the probes take no token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from registry.auth.scopes import Scope, requires


def probes_router(
    version: str,
    ready: Callable[[], dict[str, Any]] | None = None,
    *,
    mode: str = "standalone",
    zone: str | None = None,
) -> APIRouter:
    """The routes above; `ready` says whether the server is ready (None: always). The
    index says the control plane's mode (and zone), as Kuma's `GET /config` does: what
    `meshdns export` keeps depends on it."""
    router = APIRouter()

    @router.get("/")
    async def index() -> dict[str, Any]:
        found: dict[str, Any] = {"tagline": "meshdns", "version": version, "mode": mode}
        if zone is not None:
            found["zone"] = zone
        return found

    @router.get("/healthz")
    @requires(Scope.PUBLIC)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    @requires(Scope.PUBLIC)
    async def readyz() -> JSONResponse:
        state = ready() if ready is not None else {"ready": True}
        return JSONResponse(state, status_code=200 if state.get("ready") else 503)

    return router
