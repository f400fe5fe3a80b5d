"""Input limits: every bound on a resource being registered, with the field it names;
documents that are no JSON data; the request body's size (registry/limits.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

import pytest

from registry.errors import InvalidResource
from registry.limits import BodyLimit
from registry.schema import Dataplane, parse_resource, parse_resources
from tests.factories import dataplane, inbound

KUMA_LONGEST = "s" * 63 + "_" + "n" * 63 + "_svc_65535"  # Kubernetes' longest name and namespace


def ingress(*available: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "ZoneIngress",
        "name": "ingress-1",
        "networking": {"address": "10.0.0.1", "port": 10001},
        "availableServices": list(available),
    }


def permission(sources: int, destinations: int = 1) -> dict[str, Any]:
    match = {"match": {"kuma.io/service": "*"}}
    return {
        "type": "TrafficPermission",
        "mesh": "default",
        "name": "allow",
        "sources": [match] * sources,
        "destinations": [match] * destinations,
    }


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


REJECTED = [
    pytest.param(
        dataplane("dp-1", "10.0.0.1", *["web"] * 101, port=1000),
        "networking.inbound",
        "has 101 inbounds; at most 100 are allowed",
        id="101 inbounds",
    ),
    pytest.param(
        dataplane(
            "dp-1",
            "10.0.0.1",
            "web",
            outbound=[{"port": 1000 + i, "tags": {"a": "b"}} for i in range(1001)],
        ),
        "networking.outbound",
        "has 1001 outbounds; at most 1000 are allowed",
        id="1001 outbounds",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", tags={f"t{i}": "v" for i in range(64)}),
        "networking.inbound[0].tags",
        "has 65 tags; at most 64 are allowed",
        id="65 tags",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", tags={"version": "v" * 254}),
        "networking.inbound[0].tags",
        "tag 'version': keys and values are at most 253 characters",
        id="tag value of 254",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", tags={"k" * 254: "v"}),
        "networking.inbound[0].tags",
        f"tag {'k' * 40!r}... (254 characters): keys and values are at most 253 characters",
        id="tag key of 254",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", labels={f"l{i}": "v" for i in range(65)}),
        "labels",
        "has 65 labels; at most 64 are allowed",
        id="65 labels",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", labels={"team": "x" * 254}),
        "labels",
        "label 'team': keys and values are at most 253 characters",
        id="label value of 254",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", labels={"team": "a\nb"}),
        "labels",
        "label 'team': keys and values must not contain control characters",
        id="label with a newline",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", labels={"": "x"}),
        "labels",
        "label keys must not be empty",
        id="empty label key",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", inbounds=[inbound("web", name="in\x00bound")]),
        "networking.inbound[0].name",
        "must not contain control characters (newlines, tabs, NUL...)",
        id="inbound name with NUL",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web.v1"),
        "networking.inbound[0].tags",
        "tag \"kuma.io/service\" is 'web.v1': a service name is one DNS label (<service>.mesh), "
        "so it cannot contain '.'; Kuma's '_' form answers at the dotted name too "
        "(a_b answers at a_b.mesh and a.b.mesh)",
        id="service with a dot",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "s" * 64),
        "networking.inbound[0].tags",
        'tag "kuma.io/service" is 64 characters long: a service name is one DNS label of at '
        "most 63 characters (<service>.mesh), or Kuma's a_b_c form whose parts are labels of "
        "at most 63 characters each (a.b.c.mesh)",
        id="service of 64 without _",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "s" * 64 + "_ns_svc_80"),
        "networking.inbound[0].tags",
        'tag "kuma.io/service" is 74 characters long: a service name is one DNS label of at '
        "most 63 characters (<service>.mesh), or Kuma's a_b_c form whose parts are labels of "
        "at most 63 characters each (a.b.c.mesh)",
        id="Kuma-style service with a part of 64",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "a_" * 40 + "b" * 100),
        "networking.inbound[0].tags",
        'tag "kuma.io/service" is 180 characters long: a service name is one DNS label of at '
        "most 63 characters (<service>.mesh), or Kuma's a_b_c form whose parts are labels of "
        "at most 63 characters each (a.b.c.mesh)",
        id="Kuma-style service, last part of 100",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", metrics={"since": date(2024, 1, 1)}),
        "metrics.since",
        "must be JSON data, not a date (quote it as a string)",
        id="YAML date",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", metrics={"blob": b"\xff"}),
        "metrics.blob",
        "must be JSON data, not binary data (quote it as a string)",
        id="YAML binary",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", metrics={1: "one"}),
        "metrics[1]",
        "keys must be strings, not a number (quote the key)",
        id="number as a key",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", metrics={"ratio": float("nan")}),
        "metrics.ratio",
        "must be a finite number, not nan",
        id="NaN",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", labels={"team": "\ud800"}),
        "labels.team",
        "is not valid Unicode (a lone surrogate)",
        id="lone surrogate",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", metrics=nested(32)),
        "metrics" + ".a" * 31,
        "nests deeper than 32 levels",
        id="33 levels deep",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", metrics={"values": [0] * 1_000_000}),
        "metrics.values",
        "the request holds more than 1,000,000 values (mappings, lists and scalars, each use "
        "of a YAML alias counted again); split it",
        id="a million values",
    ),
    pytest.param(
        ingress(*[{"tags": {"kuma.io/service": "web"}}] * 10_001),
        "availableServices",
        "has 10001 available services; at most 10000 are allowed",
        id="10001 available services",
    ),
    pytest.param(
        ingress({"tags": {"kuma.io/service": "web.v1"}}),
        "availableServices[0].tags",
        "tag \"kuma.io/service\" is 'web.v1': a service name is one DNS label (<service>.mesh), "
        "so it cannot contain '.'; Kuma's '_' form answers at the dotted name too "
        "(a_b answers at a_b.mesh and a.b.mesh)",
        id="available service with a dot",
    ),
    pytest.param(
        ingress({"tags": {"kuma.io/service": "*"}}),
        "availableServices[0].tags",
        'tag "kuma.io/service" cannot contain "*"',
        id="available service *",
    ),
    pytest.param(
        ingress({"tags": {"kuma.io/service": "web"}, "instances": 2**31}),
        "availableServices[0].instances",
        "Input should be less than or equal to 2147483647",
        id="2**31 instances",
    ),
    pytest.param(
        permission(sources=1001),
        "sources",
        "has 1001 sources; at most 1000 are allowed",
        id="1001 sources",
    ),
    pytest.param(
        permission(sources=1, destinations=1001),
        "destinations",
        "has 1001 destinations; at most 1000 are allowed",
        id="1001 destinations",
    ),
    pytest.param(
        {"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "b" * 254}},
        "mtls.enabledBackend",
        "must be at most 253 characters",
        id="mTLS backend name of 254",
    ),
    pytest.param(
        {"type": "Mesh", "name": "default", "skipCreatingInitialPolicies": ["a\tb"]},
        "skipCreatingInitialPolicies[0]",
        "must not contain control characters (newlines, tabs, NUL...)",
        id="policy name with a tab",
    ),
    pytest.param(
        {"type": "Mesh", "name": "m" * 254},
        "name",
        "must be at most 253 characters",
        id="name of 254",
    ),
]


@pytest.mark.parametrize(("document", "field", "message"), REJECTED)
def test_limit_is_enforced_naming_the_field(document, field, message):
    with pytest.raises(InvalidResource) as raised:
        parse_resource(document)
    assert [(cause.field, cause.message) for cause in raised.value.causes] == [(field, message)]


ACCEPTED = [
    pytest.param(
        dataplane("dp-1", "10.0.0.1", *["web"] * 100, port=1000),
        id="100 inbounds",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", tags={f"t{i}": "v" * 253 for i in range(63)}),
        id="64 tags",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "web", labels={f"l{i}": "v" * 253 for i in range(64)}),
        id="64 labels",
    ),
    pytest.param(
        dataplane("dp-1", "10.0.0.1", "backend_kuma-demo_svc_8080"), id="Kuma's demo service"
    ),
    pytest.param(dataplane("dp-1", "10.0.0.1", KUMA_LONGEST), id="Kuma-style, 137 characters"),
    pytest.param(dataplane("dp-1", "10.0.0.1", "s" * 63), id="service of 63"),
    pytest.param(dataplane("dp-1", "10.0.0.1", "Web:v1/x"), id="service with : and /"),
    pytest.param(dataplane("dp-1", "10.0.0.1", "web", metrics=nested(31)), id="32 levels deep"),
    pytest.param(ingress(*[{"tags": {"kuma.io/service": "web"}}] * 10_000), id="10000 services"),
    pytest.param(permission(sources=1000, destinations=1000), id="1000 sources"),
]


@pytest.mark.parametrize("document", ACCEPTED)
def test_within_the_limits_is_accepted(document):
    # Accepted whole: nothing at a bound is cut or changed on the way in.
    assert parse_resource(document).dump() == document


def test_stored_resources_are_read_back_without_the_limits():
    # What the registry holds was valid when written; a tighter bound must not make it
    # unreadable (the store and the sync worker validate stored specs without the limits).
    stored = dataplane("dp-1", "10.0.0.1", "web.v1", labels={f"l{i}": "v" for i in range(66)})
    assert Dataplane.model_validate(stored).services == ("web.v1",)


def test_apply_holds_at_most_ten_thousand_resources():
    with pytest.raises(InvalidResource) as raised:
        parse_resources([dataplane("dp-1", "10.0.0.1", "web")] * 10_001)
    assert [(c.field, c.message) for c in raised.value.causes] == [
        ("items", "has 10001 resources; at most 10000 are allowed in one request")
    ]
    assert len(parse_resources([dataplane("dp-1", "10.0.0.1", "web")] * 10_000)) == 10_000


def test_apply_budget_is_shared_by_its_documents_and_stops_at_the_first_overrun():
    # One alias-shared metrics list of 200,000 values: each document counts it again.
    metrics = {"values": [0] * 200_000}
    with pytest.raises(InvalidResource) as raised:
        parse_resources([dataplane("dp-1", "10.0.0.1", "web", metrics=metrics)] * 10)
    assert [c.field for c in raised.value.causes] == ["items[4].metrics.values"]


def test_yaml_alias_bomb_is_refused_quickly():
    import time

    import yaml

    lines = ["metrics:", '  a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for level, name in enumerate("bcdefgh"):
        previous = "abcdefgh"[level]
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{previous}"] * 10) + "]")
    document = yaml.safe_load("\n".join(lines))  # 10**8 strings, shared
    document.update(dataplane("dp-1", "10.0.0.1", "web"))
    started = time.monotonic()
    with pytest.raises(InvalidResource) as raised:
        parse_resource(document)
    assert time.monotonic() - started < 5
    assert raised.value.causes[0].message.startswith("the request holds more than 1,000,000")


# The API: the same limits, in Kuma's error shape.


@pytest.fixture
async def mesh(client):
    assert (await client.put("/meshes/default", json={})).status_code == 201


async def test_api_answers_400_naming_the_field(client, mesh):
    response = await client.put(
        "/meshes/default/dataplanes/dp-1", json=dataplane("dp-1", "10.0.0.1", "web.v1")
    )
    assert response.status_code == 400
    assert response.json() == {
        "title": "Bad Request",
        "details": "Dataplane is not valid",
        "causes": [
            {
                "field": "networking.inbound[0].tags",
                "message": "tag \"kuma.io/service\" is 'web.v1': a service name is one DNS "
                "label (<service>.mesh), so it cannot contain '.'; Kuma's '_' form answers at "
                "the dotted name too (a_b answers at a_b.mesh and a.b.mesh)",
            }
        ],
    }
    assert (await client.get("/meshes/default/dataplanes")).json()["total"] == 0


async def test_api_yaml_alias_bomb_is_400(client, mesh):
    lines = ["metrics:", '  a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for level, name in enumerate("bcdefgh"):
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{'abcdefgh'[level]}"] * 10) + "]")
    lines += ["networking: {address: 10.0.0.1, inbound: [{port: 80, tags: {kuma.io/service: a}}]}"]
    response = await client.put(
        "/meshes/default/dataplanes/dp-1",
        content="\n".join(lines),
        headers={"content-type": "application/yaml"},
    )
    assert response.status_code == 400
    assert response.json()["causes"][0]["message"].startswith("the request holds more than")


async def test_a_stored_resource_over_the_limits_is_still_listed(client, mesh, store):
    await store.put(Dataplane.model_validate(dataplane("dp-1", "10.0.0.1", "web.v1")))
    listed = await client.get("/meshes/default/dataplanes")
    assert listed.status_code == 200
    assert listed.json()["items"][0]["networking"]["inbound"][0]["tags"] == {
        "kuma.io/service": "web.v1"
    }


# The body limit (registry/limits.py), as a pure ASGI middleware.


class Recorder:
    """A plain ASGI app that reads the whole body and answers with its length."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


async def call(app, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, dict, int]:
    """Send ``chunks`` as one request's body; the status, the JSON answer (or {}), and how
    many chunks the server read."""
    read = 0

    async def receive():
        nonlocal read
        if read < len(chunks):
            read += 1
            return {
                "type": "http.request",
                "body": chunks[read - 1],
                "more_body": read < len(chunks),
            }
        await asyncio.sleep(3600)  # a client that sent everything waits for the answer

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/apply",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await app(scope, receive, send)
    status = sent[0]["status"]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    answer = json.loads(body) if status == 413 else {"length": int(body)}
    return status, answer, read


JSON = {"content-type": "application/json"}
YAML = {"content-type": "application/yaml"}


async def test_declared_length_over_the_limit_is_413_without_reading():
    app = Recorder()
    status, answer, read = await call(
        BodyLimit(app, max_bytes=100), [b"x" * 101], {**JSON, "content-length": "101"}
    )
    assert (status, read, app.bodies) == (413, 0, [])
    assert answer == {
        "title": "Content Too Large",
        "details": "Request body is over the limit of 100 bytes",
        "causes": [{"field": "(body)", "message": "a body is at most 100 bytes"}],
    }


async def test_streamed_body_is_refused_once_past_the_limit():
    app = Recorder()
    chunks = [b"x" * 40] * 10  # no Content-Length: chunked
    status, _, read = await call(BodyLimit(app, max_bytes=100), chunks, JSON)
    assert (status, read, app.bodies) == (413, 3, [])


async def test_body_at_the_limit_reaches_the_app_whole():
    app = Recorder()
    status, answer, _ = await call(BodyLimit(app, max_bytes=100), [b"x" * 50] * 2, JSON)
    assert (status, answer, app.bodies) == (200, {"length": 100}, [b"x" * 100])


async def test_yaml_bodies_have_their_own_lower_limit():
    limited = BodyLimit(Recorder(), max_bytes=1000, max_yaml_bytes=100)
    status, answer, _ = await call(limited, [b"x" * 101], YAML)
    assert status == 413
    assert answer["causes"] == [
        {
            "field": "(body)",
            "message": "a body read as YAML (a Content-Type without json) is at most 100 bytes",
        }
    ]
    assert (await call(limited, [b"x" * 101], JSON))[0] == 200


async def test_default_limits_are_16_mib_and_1_mib_for_yaml():
    limited = BodyLimit(Recorder())
    status, answer, read = await call(limited, [], {**JSON, "content-length": str(16 * 2**20 + 1)})
    assert (status, read) == (413, 0)
    assert answer["details"] == "Request body is over the limit of 16777216 bytes (16 MiB)"
    assert (await call(limited, [b"x" * 2**20, b"x"], YAML))[0] == 413


async def test_the_api_answers_413_past_its_limits(client):
    # create_app puts BodyLimit in front of every route, with the default limits.
    assert (await client.put("/meshes/default", json={})).status_code == 201
    assert (
        await client.post("/apply", json={"items": [dataplane("dp-1", "10.0.0.1", "web")]})
    ).status_code == 200
    # The most resources one apply may hold fit the body limit many times over.
    assert (
        len(json.dumps({"items": [dataplane("dp-1", "10.0.0.1", "web")] * 10_000})) < 16 * 2**20 / 4
    )

    large = await client.post("/apply", content=b" " * (16 * 2**20 + 1), headers=JSON)
    assert large.status_code == 413
    assert large.headers["connection"] == "close"
    assert large.json()["details"] == "Request body is over the limit of 16777216 bytes (16 MiB)"

    async def stream():  # chunked, no Content-Length
        for _ in range(17):
            yield b" " * 2**20

    assert (await client.post("/apply", content=stream(), headers=JSON)).status_code == 413
    yaml_body = b"# " + b"x" * 2**20
    assert (await client.post("/apply", content=yaml_body, headers=YAML)).status_code == 413
    assert (await client.get("/healthz")).status_code == 200
