"""Kuma's resource paths: create, read, update, delete, list, and their errors."""

from __future__ import annotations

import pytest

from tests.factories import dataplane, traffic_permission

MESH = {"type": "Mesh", "name": "default"}


@pytest.fixture
async def mesh(client):
    response = await client.put("/meshes/default", json=MESH)
    assert response.status_code == 201


async def test_put_creates_then_updates(client, mesh):
    body = dataplane("web-1", "10.0.0.1", "web")
    created = await client.put("/meshes/default/dataplanes/web-1", json=body)
    assert created.status_code == 201
    first = (await client.get("/meshes/default/dataplanes/web-1")).json()
    assert first["networking"] == body["networking"]
    assert first["type"] == "Dataplane" and first["mesh"] == "default"

    body["networking"]["address"] = "10.0.0.2"
    updated = await client.put("/meshes/default/dataplanes/web-1", json=body)
    assert updated.status_code == 200
    second = (await client.get("/meshes/default/dataplanes/web-1")).json()
    assert second["networking"]["address"] == "10.0.0.2"
    assert second["creationTime"] == first["creationTime"]
    assert second["modificationTime"] >= first["modificationTime"]
    assert len(client.changes) == 3


async def test_each_write_reports_the_revision_it_committed(client, store, mesh):
    """on_change gets the registry's revision after the write (PUT, POST /apply, DELETE),
    so `serve` can wait for its DNS to have exactly that; a refused write reports none."""
    permission = traffic_permission("all", ["*"], ["*"])
    writes = [
        ("PUT", "/meshes/default/dataplanes/web-1", dataplane("web-1", "10.0.0.1", "web")),
        ("POST", "/apply", {"items": [dataplane("web-2", "10.0.0.2", "web")]}),
        ("PUT", "/meshes/default/traffic-permissions/all", permission),
        ("DELETE", "/meshes/default/traffic-permissions/all", None),
        ("DELETE", "/meshes/default/dataplanes/web-1", None),
        ("PUT", "/meshes/other", {"type": "Mesh", "name": "other"}),
        ("DELETE", "/meshes/other", None),
    ]
    for method, path, body in writes:
        before = len(client.changes)
        response = await client.request(method, path, json=body)
        assert response.status_code in (200, 201), (method, path, response.text)
        assert len(client.changes) == before + 1, (method, path)
        assert client.changes[-1] == await store.revision(), (method, path)
    assert client.changes == sorted(set(client.changes))

    reported = list(client.changes)
    missing = await client.delete("/meshes/default/dataplanes/web-1")
    assert missing.status_code == 404
    assert missing.json()["details"] == 'dataplane "web-1" not found in mesh "default"'
    assert client.changes == reported
    assert await store.revision() == reported[-1]


async def test_yaml_body_is_accepted(client, mesh):
    body = """
    type: Dataplane
    mesh: default
    name: db-1
    networking:
      address: 10.0.0.9
      inbound:
        - port: 5432
          tags:
            "kuma.io/service": db
    """
    response = await client.put(
        "/meshes/default/dataplanes/db-1",
        content=body,
        headers={"content-type": "application/yaml"},
    )
    assert response.status_code == 201, response.text
    assert (await client.get("/meshes/default/dataplanes/db-1")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"networking": {"address": "nope", "inbound": []}}, "networking.address", "not a valid"),
        (
            {"networking": {"address": "10.0.0.1", "inbound": [{"port": 70000, "tags": {}}]}},
            "networking.inbound[0].port",
            "less than or equal to 65535",
        ),
        (
            {"networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"a": "b"}}]}},
            "networking.inbound[0].tags",
            '"kuma.io/service" has to exist',
        ),
        ({"networking": {"address": "10.0.0.1"}, "color": "red"}, "color", "unknown field"),
        ({"type": "Gateway"}, "type", "must be 'Dataplane' as in the URL"),
        ({"name": "other"}, "name", "as in the URL"),
    ],
)
async def test_invalid_dataplane_is_400_with_causes_and_nothing_written(
    client, mesh, body, field, message
):
    response = await client.put("/meshes/default/dataplanes/web-1", json=body)
    assert response.status_code == 400
    error = response.json()
    assert set(error) == {"title", "details", "causes"}
    assert any(c["field"] == field and message in c["message"] for c in error["causes"]), error
    assert (await client.get("/meshes/default/dataplanes/web-1")).status_code == 404
    assert len(client.changes) == 1  # only the mesh was written


@pytest.mark.parametrize("body", [b"{not json", b"a: [unclosed", b"", b"- just\n- a list\n"])
async def test_unreadable_body_is_400(client, mesh, body):
    response = await client.put(
        "/meshes/default/dataplanes/web-1", content=body, headers={"content-type": "text/plain"}
    )
    assert response.status_code == 400
    assert response.json()["causes"]


async def test_missing_resources_are_404(client, mesh):
    for path in ("/meshes/nope", "/meshes/default/dataplanes/nope"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["title"] == "Not Found"
    assert (await client.delete("/meshes/default/dataplanes/nope")).status_code == 404


async def test_dataplane_in_a_missing_mesh_is_refused(client):
    response = await client.put(
        "/meshes/ghost/dataplanes/web-1",
        json={**dataplane("web-1", "10.0.0.1", "web"), "mesh": "ghost"},
    )
    assert response.status_code == 404
    assert "ghost" in response.json()["details"]


async def test_delete_removes_the_dataplane_and_its_service(client, mesh):
    await client.put("/meshes/default/dataplanes/web-1", json=dataplane("web-1", "10.0.0.1", "web"))
    services = (await client.get("/meshes/default/services")).json()
    assert [s["name"] for s in services["items"]] == ["web"]
    assert (await client.delete("/meshes/default/dataplanes/web-1")).status_code == 200
    assert (await client.get("/meshes/default/dataplanes/web-1")).status_code == 404
    assert (await client.get("/meshes/default/services")).json()["items"] == []


async def test_list_pages_with_size_offset_and_next(client, mesh):
    for i in range(5):
        name = f"dp-{i}"
        await client.put(
            f"/meshes/default/dataplanes/{name}", json=dataplane(name, f"10.0.0.{i + 1}", "web")
        )
    first = (await client.get("/meshes/default/dataplanes", params={"size": 2})).json()
    assert first["total"] == 5
    assert [item["name"] for item in first["items"]] == ["dp-0", "dp-1"]
    assert "offset=2" in first["next"] and "size=2" in first["next"]
    last = (await client.get("/meshes/default/dataplanes", params={"size": 2, "offset": 4})).json()
    assert [item["name"] for item in last["items"]] == ["dp-4"]
    assert last["next"] is None


@pytest.mark.parametrize("params", [{"size": 0}, {"size": 1001}, {"offset": -1}, {"size": "x"}])
async def test_bad_paging_is_400(client, mesh, params):
    response = await client.get("/meshes/default/dataplanes", params=params)
    assert response.status_code == 400
    assert response.json()["causes"]


async def test_tag_filters(client, mesh):
    await client.put(
        "/meshes/default/dataplanes/a",
        json=dataplane("a", "10.0.0.1", "web", tags={"version": "v1"}),
    )
    await client.put(
        "/meshes/default/dataplanes/b",
        json=dataplane("b", "10.0.0.2", "web", tags={"version": "v2"}),
    )
    await client.put("/meshes/default/dataplanes/c", json=dataplane("c", "10.0.0.3", "db"))

    async def names(*tags: str) -> list[str]:
        response = await client.get("/meshes/default/dataplanes", params=[("tag", t) for t in tags])
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert await names("kuma.io/service:web") == ["a", "b"]
    assert await names("kuma.io/service:web", "version:v2") == ["b"]
    assert await names("version:*") == ["a", "b"]
    assert await names("kuma.io/service:nope") == []
    assert (
        await client.get("/meshes/default/dataplanes", params={"tag": "novalue"})
    ).status_code == 400


async def test_services_show_vip_and_endpoint_counts(client, mesh):
    await client.put("/meshes/default/dataplanes/a", json=dataplane("a", "10.0.0.1", "web"))
    unready = dataplane("b", "10.0.0.2", "web")
    unready["networking"]["inbound"][0]["health"] = {"ready": False}
    await client.put("/meshes/default/dataplanes/b", json=unready)
    [web] = (await client.get("/meshes/default/services")).json()["items"]
    assert web["name"] == "web"
    assert web["vip"].startswith("24") or web["vip"].startswith("25")
    assert (web["endpoints"], web["dataplanes"]) == (1, 2)
    assert web["zones"] == {"local": 1}  # endpoints by zone: all of them this one's


async def test_meshes_crud_and_cascade(client, mesh):
    assert (
        await client.put("/meshes/other", json={"type": "Mesh", "name": "other"})
    ).status_code == 201
    body = {**dataplane("x", "10.0.0.1", "web"), "mesh": "other"}
    assert (await client.put("/meshes/other/dataplanes/x", json=body)).status_code == 201
    names = [m["name"] for m in (await client.get("/meshes")).json()["items"]]
    assert names == ["default", "other"]
    assert (await client.delete("/meshes/other")).status_code == 200
    assert (await client.get("/meshes/other/dataplanes/x")).status_code == 404
    assert (await client.get("/meshes/other")).status_code == 404


async def test_health_endpoints(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
