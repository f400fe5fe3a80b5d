"""`POST /apply` of an export's `VirtualIPs`: validated before anything is written,
admin only, and a recorded VIP kept for its service only when the address is free."""

from __future__ import annotations

from registry.schema import parse_resource
from tests.auth.conftest import dataplane_token
from tests.factories import dataplane


def recorded(*vips: dict) -> dict:
    return {"type": "VirtualIPs", "mesh": "default", "name": "default", "vips": list(vips)}


async def test_recorded_vips_are_taken_back_when_free(api):
    server = api()
    http = server.client(host="127.0.0.1")  # loopback: admin
    await server.store.put(parse_resource(dataplane("web-1", "10.0.0.1", "web")))  # 240.0.0.1
    answer = await http.post(
        "/apply",
        json={
            "items": [
                recorded(
                    {"service": "backend", "ip": "240.0.0.7"},
                    {"service": "db", "ip": "240.0.0.1"},  # web's: not free
                    {"service": "cache", "ip": "10.0.0.5"},  # outside the range
                ),
                dataplane("backend-1", "10.0.0.2", "backend"),
                dataplane("db-1", "10.0.0.3", "db"),
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"][-1]["status"] == "Recorded 1 of 3"
    services = {
        item["name"]: item["vip"]
        for item in (await http.get("/meshes/default/services")).json()["items"]
    }
    assert services["backend"] == "240.0.0.7"
    assert services["db"] not in ("240.0.0.1", "240.0.0.7")


async def test_an_invalid_record_writes_nothing(api):
    server = api()
    http = server.client(host="127.0.0.1")
    answer = await http.post(
        "/apply",
        json={
            "items": [
                dataplane("backend-1", "10.0.0.2", "backend"),
                recorded({"service": "backend", "ip": "not-an-address"}),
            ]
        },
    )
    assert answer.status_code == 400, answer.text
    assert any(cause["field"] == "items[1].vips[0].ip" for cause in answer.json()["causes"])
    assert (await http.get("/meshes/default/dataplanes/backend-1")).status_code == 404


async def test_only_an_admin_records_vips(api):
    server = api(loopback_admin=False)
    http = await server.token_client(dataplane_token("backend"))
    answer = await http.post(
        "/apply",
        json={
            "items": [
                dataplane("backend-1", "10.0.0.2", "backend"),
                recorded({"service": "backend", "ip": "240.0.0.7"}),
            ]
        },
    )
    assert answer.status_code == 403, answer.text
    assert "only an admin token" in answer.text
