"""Traffic permissions, zone ingresses and egresses, zones: Kuma's paths, VIPs, snapshots."""

from __future__ import annotations

from ipaddress import IPv4Address

import httpx
import pytest

from registry.api.app import create_app
from registry.feed.view import RegistryView
from registry.snapshot import TrafficRule
from registry.store import Store

ALLOW_WEB = {
    "type": "TrafficPermission",
    "mesh": "default",
    "name": "web-to-backend",
    "sources": [{"match": {"kuma.io/service": "web"}}],
    "destinations": [{"match": {"kuma.io/service": "backend"}}],
}


def ingress(name: str, zone: str | None, *services: str) -> dict:
    body: dict = {
        "type": "ZoneIngress",
        "name": name,
        "networking": {
            "address": "10.1.0.1",
            "port": 10001,
            "advertisedAddress": "203.0.113.1",
            "advertisedPort": 443,
        },
        "availableServices": [
            {"tags": {"kuma.io/service": service}, "instances": 2, "mesh": "default"}
            for service in services
        ],
    }
    if zone:
        body["zone"] = zone
    return body


@pytest.fixture
async def mesh(client):
    assert (
        await client.put("/meshes/default", json={"type": "Mesh", "name": "default"})
    ).status_code == 201


async def test_traffic_permission_round_trip(client, mesh):
    path = "/meshes/default/traffic-permissions/web-to-backend"
    assert (await client.put(path, json=ALLOW_WEB)).status_code == 201
    assert (await client.put(path, json=ALLOW_WEB)).status_code == 200
    got = (await client.get(path)).json()
    assert got["sources"] == ALLOW_WEB["sources"] and got["mesh"] == "default"
    listing = (await client.get("/meshes/default/traffic-permissions")).json()
    assert [item["name"] for item in listing["items"]] == ["web-to-backend"]
    assert (await client.delete(path)).status_code == 200
    assert (await client.get(path)).status_code == 404


async def test_invalid_traffic_permission_names_the_field(client, mesh):
    body = {**ALLOW_WEB, "sources": [{"match": {"version": "v1"}}]}
    response = await client.put("/meshes/default/traffic-permissions/web-to-backend", json=body)
    assert response.status_code == 400
    assert response.json()["causes"][0]["field"] == "sources[0].match"


async def test_traffic_permission_needs_its_mesh(client):
    response = await client.put(
        "/meshes/nowhere/traffic-permissions/web-to-backend", json={**ALLOW_WEB, "mesh": "nowhere"}
    )
    assert response.status_code == 404
    assert "nowhere" in response.json()["details"]


async def test_deleting_a_mesh_deletes_its_permissions(client, mesh, store):
    await client.put("/meshes/default/traffic-permissions/web-to-backend", json=ALLOW_WEB)
    assert (await client.delete("/meshes/default")).status_code == 200
    assert (
        await client.put("/meshes/default", json={"type": "Mesh", "name": "default"})
    ).status_code == 201
    assert (await client.get("/meshes/default/traffic-permissions")).json()["total"] == 0


async def test_an_ingress_of_another_zone_gives_its_services_vips_here(client, mesh, store):
    assert (
        await client.put("/zoneingresses/zone-a.in", json=ingress("zone-a.in", "zone-a", "backend"))
    ).status_code == 201
    snapshot = await store.load_snapshot()
    remote = snapshot.meshes["default"].remote["backend"]
    assert remote.vip is not None and IPv4Address(remote.vip) in store.vips.cidr
    [endpoint] = remote.endpoints
    assert (str(endpoint.address), endpoint.port, endpoint.zone) == ("203.0.113.1", 443, "zone-a")
    # Not a local service: nothing in the mesh's own services.
    assert "backend" not in snapshot.meshes["default"].services
    # Offered no more: its VIP goes into quarantine.
    await client.put("/zoneingresses/zone-a.in", json=ingress("zone-a.in", "zone-a"))
    snapshot = await store.load_snapshot()
    assert "backend" not in snapshot.meshes["default"].remote
    services = {s.name: s for s in await store.list_services("default")}
    assert "backend" not in services


async def test_remote_services_go_through_the_local_egress(client, mesh, store):
    await client.put("/zoneingresses/zone-a.in", json=ingress("zone-a.in", "zone-a", "backend"))
    egress = {
        "type": "ZoneEgress",
        "name": "egress",
        "networking": {"address": "10.2.0.1", "port": 10002},
    }
    assert (await client.put("/zoneegresses/egress", json=egress)).status_code == 201
    [endpoint] = (await store.load_snapshot()).meshes["default"].remote["backend"].endpoints
    assert (str(endpoint.address), endpoint.port, endpoint.zone) == ("10.2.0.1", 10002, "zone-a")
    assert (await client.delete("/zoneegresses/egress")).status_code == 200
    [endpoint] = (await store.load_snapshot()).meshes["default"].remote["backend"].endpoints
    assert str(endpoint.address) == "203.0.113.1"


async def test_the_zones_own_ingress_offers_nothing_remote(client, mesh, store):
    await client.put("/zoneingresses/own", json=ingress("own", None, "backend"))
    assert not (await store.load_snapshot()).meshes["default"].remote


async def test_zones_exist_on_global_only(store):
    body = {"type": "Zone", "name": "zone-a"}
    for mode, status in (("standalone", 405), ("zone", 405), ("global", 201)):
        app = create_app(Store(store.engine, store.vips, mode=mode))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
            response = await http.put("/zones/zone-a", json=body)
            assert response.status_code == status, mode
    app = create_app(Store(store.engine, store.vips, mode="global"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://m"
    ) as http:
        zones = (await http.get("/zones+insights")).json()["items"]
        assert [(z["name"], z["enabled"], z["status"]) for z in zones] == [
            ("zone-a", True, "Offline")
        ]
        assert (await http.get("/status/zones")).json() == [{"name": "zone-a", "active": False}]


def test_view_follows_permission_changes_as_a_remote_delta():
    view = RegistryView("zone-b")
    view.apply(1, {"default": True}, {}, {})
    rule = TrafficRule(frozenset({"web"}), frozenset({"*"}))
    delta = view.apply(2, {}, {}, {}, permissions={("default", "p"): rule})
    assert delta.remote == {"default"} and not delta.services
    assert view.snapshot.meshes["default"].permissions == (rule,)
    delta = view.apply(3, {}, {}, {}, permissions={("default", "p"): None})
    assert view.snapshot.meshes["default"].permissions == ()
