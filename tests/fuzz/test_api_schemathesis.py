"""Fuzzing the HTTP API with schemathesis against the OpenAPI document it serves.

Every operation of ``registry.api.app.create_app`` over a real store (SQLite and Postgres)
gets schemathesis' generated requests, valid and invalid by the spec; the checks: no 5xx
(``not_a_server_error``), and each answer with a documented status matches its
documented schema and content type. The PUT routes and POST /apply read their bodies
themselves and declare none, so a second pass adds the resource schemas of
registry/schema.py as their request bodies: bodies reach validation (and the store)
instead of being empty.

Requests go through httpx's ASGI transport on this test's own event loop, where the
store's connections live. scripts/fuzz-api runs the same with more examples.
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from registry.api.app import create_app
from registry.schema import RESOURCE_TYPES, Dataplane
from registry.store import Store
from registry.store.database import create_engine
from tests.serve_settings import vip_settings

# Examples per operation and generation mode (positive, negative); scripts/fuzz-api
# raises it through the environment.
EXAMPLES = int(os.environ.get("MESHDNS_FUZZ_API_EXAMPLES", "6"))
BASE_URL = "http://meshdns"
# Reads first, then writes, deletions last: what was written is there to be read.
METHOD_ORDER = {"GET": 0, "PUT": 1, "POST": 2, "DELETE": 3}
# The resource each body-taking route reads, for the request bodies the spec lacks.
BODIES = {
    "/meshes/{mesh}": "Mesh",
    "/meshes/{mesh}/dataplanes/{name}": "Dataplane",
    "/meshes/{mesh}/traffic-permissions/{name}": "TrafficPermission",
    "/zoneingresses/{name}": "ZoneIngress",
    "/zoneegresses/{name}": "ZoneEgress",
    "/zones/{name}": "Zone",
}
CONFORMANCE = [not_a_server_error, response_schema_conformance, content_type_conformance]


class Api:
    """The API over a real store, called on a private event loop (the store's)."""

    def __init__(self, runner: asyncio.Runner, database_url: str, mode: str) -> None:
        self.runner = runner
        self.engine = create_engine(database_url)
        self.app = create_app(Store(self.engine, vip_settings(), mode=mode))
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url=BASE_URL)

    def send(self, kwargs: dict[str, Any]) -> httpx.Response:
        """Send one schemathesis case's request (its requests-style arguments)."""
        kwargs = dict(kwargs)
        # The spec declares no cookie; httpx deprecates per-request cookies.
        assert not kwargs.pop("cookies", None)
        body = kwargs.pop("data", None)
        if body is not None:
            kwargs["content"] = body
        return self.runner.run(self.http.request(**kwargs))

    def close(self) -> None:
        self.runner.run(self.http.aclose())
        self.runner.run(self.engine.dispose())


@contextmanager
def api(database_url: str, mode: str = "standalone") -> Iterator[Api]:
    with asyncio.Runner() as runner:
        served = Api(runner, database_url, mode)
        try:
            yield served
        finally:
            served.close()


def seed(served: Api) -> None:
    """Resources at the names schemathesis tries first ("0"), so reads find something."""
    dataplane = {
        "networking": {
            "address": "10.0.0.1",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
        }
    }
    permission = {
        "sources": [{"match": {"kuma.io/service": "*"}}],
        "destinations": [{"match": {"kuma.io/service": "*"}}],
    }
    for path, body in [
        ("/meshes/0", {}),
        ("/meshes/0/dataplanes/0", dataplane),
        ("/meshes/0/traffic-permissions/0", permission),
        ("/zoneingresses/0", {"networking": {"address": "10.0.0.2", "port": 10001}}),
        ("/zoneegresses/0", {"networking": {"address": "10.0.0.3", "port": 10002}}),
    ]:
        response = served.send({"method": "PUT", "url": BASE_URL + path, "json": body})
        assert response.status_code == 201, response.text


def with_request_bodies(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the resource schemas as the request bodies of the writing routes."""
    spec = copy.deepcopy(spec)
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for kind, model in RESOURCE_TYPES.items():
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[kind] = schema
    for path, kind in BODIES.items():
        spec["paths"][path]["put"]["requestBody"] = _json_body(
            {"$ref": f"#/components/schemas/{kind}"}
        )
    apply_items = {"anyOf": [{"$ref": f"#/components/schemas/{kind}"} for kind in RESOURCE_TYPES]}
    spec["paths"]["/apply"]["post"]["requestBody"] = _json_body(
        {"type": "object", "properties": {"items": {"type": "array", "items": apply_items}}}
    )
    return spec


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def fuzz(
    served: Api,
    spec: dict[str, Any],
    checks: list[Callable[..., Any]],
    examples: int = EXAMPLES,
    *,
    writes_only: bool = False,
) -> list[str]:
    """Run every operation of ``spec`` (or those with a request body); the failures, one
    block per operation."""
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    if writes_only:
        operations = [op for op in operations if op.method.upper() in ("PUT", "POST")]
    operations.sort(key=lambda operation: METHOD_ORDER.get(operation.method.upper(), 9))
    failures = []
    for operation in operations:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def call(case: schemathesis.Case) -> None:
            kwargs = case.as_transport_kwargs(base_url=BASE_URL)
            response = served.send(kwargs)
            case.validate_response(response, checks=checks)

        try:
            call()
        except (Exception, BaseExceptionGroup) as error:  # every operation is reported
            failures.append(f"{operation.method.upper()} {operation.path}: {error}")
    return failures


def test_api_answers_no_5xx_and_its_documented_schemas(database_url):
    with api(database_url) as served:
        seed(served)
        spec = served.app.openapi()
        failures = fuzz(served, spec, CONFORMANCE)
        bodies = with_request_bodies(spec)
        failures += fuzz(served, bodies, [not_a_server_error], 3 * EXAMPLES, writes_only=True)
    assert not failures, "\n\n".join(failures)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database: for what does not depend on the backend."""
    path = tmp_path / "registry.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def test_global_control_plane_answers_no_5xx(sqlite_url):
    with api(sqlite_url, mode="global") as served:
        spec = with_request_bodies(served.app.openapi())
        failures = fuzz(served, spec, [not_a_server_error], writes_only=True)
    assert not failures, "\n\n".join(failures)


def test_every_status_answered_is_documented(sqlite_url):
    with api(sqlite_url) as served:
        seed(served)
        failures = fuzz(served, served.app.openapi(), [status_code_conformance], examples=5)
    assert not failures, "\n\n".join(failures)


LISTINGS = [
    "/meshes",
    "/meshes/0/dataplanes",
    "/meshes/0/services",
    "/meshes/0/traffic-permissions",
    "/zoneingresses",
    "/zoneegresses",
    "/zones",
    "/zones+insights",
]


def test_offset_past_a_64_bit_integer_is_400(database_url):
    with api(database_url) as served:
        seed(served)
        statuses = {
            path: served.send(
                {"method": "GET", "url": BASE_URL + path, "params": {"offset": 2**63}}
            ).status_code
            for path in LISTINGS
        }
    assert statuses == dict.fromkeys(LISTINGS, 400)


NUL_REQUESTS = [
    ("GET", "/meshes/a%00b", None),
    ("DELETE", "/meshes/a%00b", None),
    ("GET", "/meshes/0/dataplanes/%00", None),
    ("GET", "/meshes/0/dataplanes", {"tag": "kuma.io/service:\x00"}),
    ("GET", "/meshes/0/dataplanes", {"tag": "a\x00:b"}),
    ("GET", "/meshes/0/traffic-permissions/%00", None),
    ("GET", "/zoneingresses/%00", None),
    ("GET", "/zones/%00", None),
]


def test_nul_in_names_and_tag_filters_is_not_a_server_error(postgres_database_url):
    with api(postgres_database_url) as served:
        seed(served)
        statuses = {
            (method, path, str(params)): served.send(
                {"method": method, "url": BASE_URL + path, "params": params or {}}
            ).status_code
            for method, path, params in NUL_REQUESTS
        }
    assert not {request: status for request, status in statuses.items() if status >= 500}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("application/json", "[" * 100_000 + "]" * 100_000, id="JSON"),
        pytest.param("application/yaml", "[" * 5_000 + "]" * 5_000, id="YAML"),
    ],
)
def test_body_nested_past_the_recursion_limit_is_400(sqlite_url, content_type, body):
    with api(sqlite_url) as served:
        response = served.send(
            {
                "method": "PUT",
                "url": BASE_URL + "/meshes/0",
                "content": body,
                "headers": {"content-type": content_type},
            }
        )
    assert response.status_code == 400


def test_request_bodies_are_the_resource_models():
    # The document only: the store's engine never connects.
    spec = with_request_bodies(
        create_app(Store(create_engine("sqlite+aiosqlite://"), vip_settings())).openapi()
    )
    dataplane = spec["components"]["schemas"]["Dataplane"]
    assert (
        dataplane["properties"].keys()
        == Dataplane.model_json_schema(by_alias=True)["properties"].keys()
    )
    body = spec["paths"]["/meshes/{mesh}/dataplanes/{name}"]["put"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Dataplane"
    }
