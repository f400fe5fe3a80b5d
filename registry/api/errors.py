"""The API's answers to errors: Kuma's error shape, with the status each error means."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from registry.auth.authorization import Forbidden
from registry.auth.identity import Unauthenticated
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
from registry.schema import field_path

log = logging.getLogger("meshdns.api")

STATUS: dict[type[RegistryError], tuple[int, str]] = {
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


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error in Kuma's shape: the registry's by STATUS, invalid requests 400
    (never FastAPI's 422), anything unexpected 500."""
    app.add_exception_handler(RegistryError, _registry_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(Exception, _unexpected)


def _registry_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RegistryError)
    status, title = next(
        (value for kind, value in STATUS.items() if isinstance(error, kind)),
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
