"""The API's OpenAPI document completed: what FastAPI cannot know of the routes, as the
API answers it (tests/fuzz/test_api_schemathesis.py holds the API to it)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

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


def complete_openapi(app: FastAPI) -> None:
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
