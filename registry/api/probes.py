"""The API's own routes: what it is (``/``), whether it lives (``/healthz``) and whether
it is ready to answer (``/readyz``); the probes take no token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from registry.auth.scopes import Scope, requires


def probes_router(version: str, ready: Callable[[], dict[str, Any]] | None = None) -> APIRouter:
    """The routes above; `ready` says whether the server is ready (None: always)."""
    router = APIRouter()

    @router.get("/")
    async def index() -> dict[str, Any]:
        return {"tagline": "meshdns", "version": version}

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
