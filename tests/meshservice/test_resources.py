"""Kuma's service model at Kuma's paths: every documentation example of examples/kuma/
applied through ``POST /apply`` and read back, PUT/GET/DELETE and the listings across
meshes, the labels Kuma computes on a write, the status the view gives, and the 400s
that name the field and write nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshdns.cli.client import TABLES
from registry.api.app import create_app
from registry.api.rendering import StatusOf
from registry.auth.authentication import Authenticator
from registry.auth.identity import Identity
from registry.auth.tokens import issue_token
from registry.documents import load_yaml_documents
from registry.store import Store
from registry.write_rules import GLOBAL, STANDALONE, ZONE
from tests.factories import mesh

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "kuma").glob("*.yaml"))
# Kuma's collection of each type (mesh-scoped ones under /meshes/{mesh}/).
COLLECTION = {
    "MeshService": "meshservices",
    "MeshExternalService": "meshexternalservices",
    "MeshMultiZoneService": "meshmultizoneservices",
    "MeshTrafficPermission": "meshtrafficpermissions",
    "HostnameGenerator": "hostnamegenerators",
    "Dataplane": "dataplanes",
}


def path_of(document: dict[str, Any]) -> str:
    collection = COLLECTION[document["type"]]
    if document["type"] == "HostnameGenerator":
        return f"/hostnamegenerators/{document['name']}"
    return f"/meshes/{document.get('mesh', 'default')}/{collection}/{document['name']}"


def meshservice(name: str = "redis", mesh_name: str = "default", **fields: Any) -> dict:
    return {
        "type": "MeshService",
        "mesh": mesh_name,
        "name": name,
        "spec": {
            "selector": {"dataplaneTags": {"kuma.io/service": name}},
            "ports": [{"port": 6379}],
        },
        **fields,
    }


def external(name: str = "httpbin", **fields: Any) -> dict:
    return {"type": "MeshExternalService", "name": name, "spec": {"match": {"port": 80}}, **fields}


def multizone(name: str = "redis-all", match: dict[str, str] | None = None) -> dict:
    return {
        "type": "MeshMultiZoneService",
        "name": name,
        "spec": {
            "selector": {
                "meshService": {"matchLabels": {"app": "redis"} if match is None else match}
            },
            "ports": [{"port": 6379}],
        },
    }


def generator(name: str = "custom", template: str = "{{ .Name }}.custom.mesh.local") -> dict:
    return {
        "type": "HostnameGenerator",
        "name": name,
        "spec": {"selector": {"meshService": {"matchLabels": {}}}, "template": template},
    }


def permission(name: str = "allow-all") -> dict:
    return {
        "type": "MeshTrafficPermission",
        "name": name,
        "spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]},
    }


ApiFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def api(store: Store) -> AsyncIterator[ApiFactory]:
    """Clients of the API over the test's store (SQLite and Postgres), in `mode` (of
    `zone`), with `status_of`; the default mesh exists."""
    await store.ensure_mesh("default")
    clients: list[httpx.AsyncClient] = []

    def make(
        mode: str = STANDALONE, zone: str | None = None, status_of: StatusOf | None = None
    ) -> httpx.AsyncClient:
        app = create_app(Store(store.engine, store.vips, mode=mode), zone=zone, status_of=status_of)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://meshdns"))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def client(api: ApiFactory) -> httpx.AsyncClient:
    return api()


# -- Kuma's examples -----------------------------------------------------------------------


def test_the_examples_are_there_each_with_its_source():
    assert len(EXAMPLES) >= 30
    for example in EXAMPLES:
        assert example.read_text().startswith("# source: kumahq/kuma-website@"), example.name


async def test_every_kuma_example_applies_and_reads_back(client):
    failures = []
    for example in EXAMPLES:
        (document,) = load_yaml_documents(example.read_text())
        mesh_name = document.get("mesh", "default")
        items = (
            [document] if document["type"] == "HostnameGenerator" else [mesh(mesh_name), document]
        )
        applied = await client.post("/apply", json={"items": items})
        if applied.status_code != 200:
            failures.append(f"{example.name}: {applied.status_code} {applied.text}")
            continue
        read = await client.get(path_of(document))
        assert read.status_code == 200, (example.name, read.text)
        body = read.json()
        assert body["type"] == document["type"] and body["name"] == document["name"], example.name
        for field in ("spec", "networking"):
            if field in document:
                assert body[field] == document[field], (example.name, field)
        # The labels given are kept; Kuma's computed ones join them.
        assert document.get("labels", {}).items() <= body.get("labels", {}).items(), example.name
        assert "status" not in body, example.name  # accepted in a body, never stored
        # Applied again unchanged: an update.
        again = await client.post("/apply", json={"items": [document]})
        assert again.json()["items"][0]["status"] == "Updated", example.name
    assert not failures, "\n".join(failures)


# -- PUT, GET, DELETE, listings -----------------------------------------------------------

KINDS = [
    ("meshservices", meshservice("redis")),
    ("meshexternalservices", external("redis")),
    ("meshmultizoneservices", multizone("redis")),
    ("meshtrafficpermissions", permission("redis")),
]


@pytest.mark.parametrize(("collection", "document"), KINDS, ids=[c for c, _ in KINDS])
async def test_a_mesh_scoped_kind_is_created_updated_listed_and_deleted(
    client, collection, document
):
    await client.put("/meshes/other", json=mesh("other"))
    url = f"/meshes/default/{collection}/redis"
    assert (await client.put(url, json=document)).status_code == 201
    assert (await client.put(url, json=document)).status_code == 200
    other = {**document, "mesh": "other"}
    assert (await client.put(f"/meshes/other/{collection}/redis", json=other)).status_code == 201

    listed = (await client.get(f"/meshes/default/{collection}")).json()
    assert [(i["mesh"], i["name"]) for i in listed["items"]] == [("default", "redis")]
    everywhere = (await client.get(f"/{collection}")).json()
    assert everywhere["total"] == 2
    assert [(i["mesh"], i["name"]) for i in everywhere["items"]] == [
        ("default", "redis"),
        ("other", "redis"),
    ]
    shown = (await client.get(url)).json()
    assert list(shown)[:5] == ["type", "mesh", "name", "creationTime", "modificationTime"]

    assert (await client.delete(url)).status_code == 200
    missing = await client.get(url)
    assert missing.status_code == 404
    assert "not found in mesh" in missing.json()["details"]
    assert (await client.delete(url)).status_code == 404


async def test_hostname_generators_are_not_per_mesh(client):
    url = "/hostnamegenerators/custom"
    # Kuma's documentation writes one with `mesh:`; it is ignored.
    assert (await client.put(url, json={**generator(), "mesh": "default"})).status_code == 201
    shown = (await client.get(url)).json()
    assert "mesh" not in shown and shown["spec"]["template"] == "{{ .Name }}.custom.mesh.local"
    assert [i["name"] for i in (await client.get("/hostnamegenerators")).json()["items"]] == [
        "custom"
    ]
    assert (await client.delete(url)).status_code == 200
    assert (await client.get(url)).status_code == 404


async def test_a_body_naming_another_resource_than_the_url_is_refused(client):
    response = await client.put("/meshes/default/meshservices/redis", json=meshservice("other"))
    assert response.status_code == 400
    assert response.json()["causes"][0]["field"] == "name"


async def test_a_deleted_mesh_takes_its_resources_with_it(client):
    await client.put("/meshes/other", json=mesh("other"))
    for collection, document in KINDS:
        await client.put(f"/meshes/other/{collection}/redis", json={**document, "mesh": "other"})
    assert (await client.delete("/meshes/other")).status_code == 200
    for collection, _ in KINDS:
        assert (await client.get(f"/{collection}")).json()["total"] == 0, collection


# -- labels Kuma computes -------------------------------------------------------------------


async def labels_of(client: httpx.AsyncClient, url: str) -> dict[str, str]:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    labels: dict[str, str] = response.json().get("labels", {})
    return labels


ZONE_LABELS = {"kuma.io/origin": "zone", "kuma.io/zone": "default", "kuma.io/env": "universal"}


@pytest.mark.parametrize("how", ["PUT", "POST /apply"])
async def test_a_standalone_control_plane_labels_what_it_writes_as_its_zones(client, how):
    documents = {
        "/meshes/default/meshservices/redis": meshservice(),
        "/meshes/default/meshexternalservices/httpbin": external(),
        "/meshes/default/meshmultizoneservices/redis-all": multizone(),
        "/meshes/default/meshtrafficpermissions/allow-all": permission(),
        "/hostnamegenerators/custom": generator(),
    }
    for url, document in documents.items():
        if how == "PUT":
            assert (await client.put(url, json=document)).status_code == 201, url
        else:
            assert (await client.post("/apply", json={"items": [document]})).status_code == 200

    mesh_label = {"kuma.io/mesh": "default"}
    assert await labels_of(client, "/meshes/default/meshservices/redis") == {
        **mesh_label,
        **ZONE_LABELS,
    }
    assert await labels_of(client, "/meshes/default/meshexternalservices/httpbin") == {
        **mesh_label,
        **ZONE_LABELS,
    }
    assert await labels_of(client, "/meshes/default/meshtrafficpermissions/allow-all") == {
        **mesh_label,
        **ZONE_LABELS,
    }
    # A MeshMultiZoneService is global's: only its mesh. A generator has none.
    assert await labels_of(client, "/meshes/default/meshmultizoneservices/redis-all") == mesh_label
    assert await labels_of(client, "/hostnamegenerators/custom") == ZONE_LABELS


async def test_labels_given_are_kept_and_a_global_origin_takes_no_zone(client):
    given = {"kuma.io/zone": "west", "team": "db"}
    await client.put("/meshes/default/meshservices/redis", json=meshservice(labels=given))
    assert await labels_of(client, "/meshes/default/meshservices/redis") == {
        "kuma.io/mesh": "default",
        "kuma.io/origin": "zone",
        "kuma.io/env": "universal",
        **given,
    }
    synced = {"kuma.io/origin": "global"}
    await client.put("/meshes/default/meshexternalservices/httpbin", json=external(labels=synced))
    assert await labels_of(client, "/meshes/default/meshexternalservices/httpbin") == {
        "kuma.io/mesh": "default",
        **synced,
    }


async def test_a_zone_labels_with_its_name_and_global_with_the_mesh_only(api, store):
    on_zone = api(mode=ZONE, zone="east")
    assert (
        await on_zone.put("/meshes/default/meshservices/redis", json=meshservice())
    ).status_code == 201
    assert (await labels_of(on_zone, "/meshes/default/meshservices/redis"))[
        "kuma.io/zone"
    ] == "east"

    on_global = api(mode=GLOBAL)
    url = "/meshes/default/meshexternalservices/httpbin"
    assert (await on_global.put(url, json=external())).status_code == 201
    assert await labels_of(on_global, url) == {"kuma.io/mesh": "default"}
    assert (await on_global.put("/hostnamegenerators/g", json=generator("g"))).status_code == 201
    assert await labels_of(on_global, "/hostnamegenerators/g") == {}


# -- status ----------------------------------------------------------------------------------


async def test_the_service_kinds_show_the_status_the_view_gives(api):
    asked: list[tuple[str, str, str]] = []

    def status_of(kind: str, mesh_name: str, name: str) -> dict[str, Any] | None:
        asked.append((kind, mesh_name, name))
        if name == "unknown":
            return None
        return {
            "vips": [{"ip": "241.0.0.1"}],
            "addresses": [{"hostname": f"{name}.svc.mesh.local"}],
        }

    client = api(status_of=status_of)
    await client.put("/meshes/default/meshservices/redis", json=meshservice())
    await client.put("/meshes/default/meshservices/unknown", json=meshservice("unknown"))
    await client.put("/meshes/default/meshtrafficpermissions/allow-all", json=permission())

    shown = (await client.get("/meshes/default/meshservices/redis")).json()
    assert shown["status"]["vips"] == [{"ip": "241.0.0.1"}]
    assert list(shown)[-1] == "status"
    assert ("MeshService", "default", "redis") in asked
    assert "status" not in (await client.get("/meshes/default/meshservices/unknown")).json()
    listed = (await client.get("/meshservices")).json()["items"]
    assert [("status" in item) for item in listed] == [True, False]
    mtp = (await client.get("/meshes/default/meshtrafficpermissions/allow-all")).json()
    assert "status" not in mtp
    assert all(kind != "MeshTrafficPermission" for kind, _, _ in asked)


# -- 400s that name the field, and nothing written -------------------------------------------

INVALID = [
    pytest.param(
        "/hostnamegenerators/bad",
        generator("bad", "{{ .Nme }}.mesh.local"),
        "spec.template",
        id="invalid-template",
    ),
    pytest.param(
        "/meshes/default/meshmultizoneservices/redis-all",
        multizone(match={}),
        "spec.selector.meshService.matchLabels",
        id="empty-multizone-selector",
    ),
    pytest.param(
        "/meshes/default/meshservices/redis",
        {**meshservice(), "spec": {"ports": [{"port": 70000}]}},
        "spec.ports[0].port",
        id="port-out-of-range",
    ),
    pytest.param(
        "/meshes/default/meshexternalservices/httpbin",
        {**external(), "spec": {"match": {"port": 0}}},
        "spec.match.port",
        id="match-port-out-of-range",
    ),
    pytest.param(
        "/meshes/default/meshservices/redis",
        {
            **meshservice(),
            "spec": {
                "selector": {"dataplaneTags": {"app": "redis"}, "dataplaneRef": {"name": "a"}}
            },
        },
        "spec.selector",
        id="two-selectors",
    ),
    pytest.param(
        "/meshes/default/meshservices/redis.v1",
        meshservice("redis.v1"),
        "name",
        id="name-not-an-rfc-1035-label",
    ),
    pytest.param(
        "/meshes/default/meshexternalservices/9lives",
        external("9lives"),
        "name",
        id="name-starting-with-a-digit",
    ),
    pytest.param(
        "/meshes/default/meshservices/redis",
        {**meshservice(), "spec": {"ports": [{"port": 6379, "appProtocol": "mysql"}]}},
        "spec.ports[0].appProtocol",
        id="unknown-app-protocol",
    ),
]


@pytest.mark.parametrize(("url", "document", "field"), INVALID)
@pytest.mark.parametrize("how", ["PUT", "POST /apply"])
async def test_invalid_input_is_400_naming_the_field_and_writes_nothing(
    client, url, document, field, how
):
    if how == "PUT":
        response = await client.put(url, json=document)
        expected = field
    else:
        response = await client.post("/apply", json={"items": [document]})
        expected = f"items[0].{field}"
    assert response.status_code == 400, response.text
    body = response.json()
    assert expected in [cause["field"] for cause in body["causes"]], body
    assert (await client.get(url)).status_code == 404
    collection = url.rsplit("/", 2)[-2]
    assert (await client.get(f"/{collection}")).json()["total"] == 0


# -- who may write --------------------------------------------------------------------------


async def test_only_an_admin_token_writes_the_service_model(store):
    await store.ensure_mesh("default")
    app = create_app(store, auth=Authenticator(store.engine, loopback_admin=False))
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))

    async def client_of(identity: Identity) -> httpx.AsyncClient:
        token = (await issue_token(store.engine, identity, timedelta(hours=1))).token
        return httpx.AsyncClient(
            transport=transport,
            base_url="http://meshdns",
            headers={"Authorization": f"Bearer {token}"},
        )

    dataplane_token = Identity("dataplane", mesh="default", services=frozenset({"redis"}))
    async with (
        await client_of(Identity("admin")) as admin,
        await client_of(dataplane_token) as dataplane,
    ):
        url = "/meshes/default/meshservices/redis"
        refused = await dataplane.put(url, json=meshservice())
        assert refused.status_code == 403
        applied = await dataplane.post("/apply", json={"items": [meshservice()]})
        assert applied.status_code == 403
        assert (await admin.get(url)).status_code == 404
        assert (await admin.put(url, json=meshservice())).status_code == 201
        assert (await dataplane.delete(url)).status_code == 403


# -- the CLI's tables --------------------------------------------------------------------


def test_get_shows_a_service_kinds_vip_and_hostnames_from_its_status():
    header, row = TABLES["meshservices"]
    assert header == ["MESH", "NAME", "VIP", "HOSTNAMES", "AGE"]
    item = {
        "mesh": "default",
        "name": "redis",
        "status": {
            "vips": [{"ip": "241.0.0.1"}],
            "addresses": [
                {"hostname": "redis.svc.mesh.local"},
                {"hostname": "redis.custom.mesh.local"},
            ],
        },
    }
    assert row(item)[:4] == [
        "default",
        "redis",
        "241.0.0.1",
        "redis.svc.mesh.local,redis.custom.mesh.local",
    ]
    # A MeshExternalService has one VIP, not a list; without a status, the cells are empty.
    external_row = TABLES["meshexternalservices"][1]
    assert external_row({**item, "status": {"vip": {"ip": "242.0.0.1"}}})[2:4] == ["242.0.0.1", ""]
    assert row({"mesh": "default", "name": "redis"})[2:4] == ["", ""]
    assert TABLES["hostnamegenerators"][0] == ["NAME", "AGE"]
    assert TABLES["meshtrafficpermissions"][0] == ["MESH", "NAME", "AGE"]
