"""Inputs as a hostile or careless client sends them: addresses that are no workload's,
keys given twice, names that would walk the API's paths. Each is refused with 400 naming
what was wrong, and nothing is written."""

from __future__ import annotations

import httpx
import pytest

from registry.api.app import create_app
from registry.store import Store
from tests.factories import dataplane, mesh
from tests.serve_settings import vip_settings


@pytest.fixture
async def default_mesh(client):
    assert (await client.put("/meshes/default", json=mesh())).status_code == 201


ADDRESS_CASES = [
    # (where the address goes, the address, a word the reason must hold)
    ("networking.address", "0.0.0.0", "unspecified"),
    ("networking.address", "::", "unspecified"),
    ("networking.address", "255.255.255.255", "broadcast"),
    ("networking.address", "224.0.0.1", "multicast"),
    ("networking.address", "ff02::1", "multicast"),
    ("networking.address", "240.0.0.2", "240.0.0.0/4"),
    ("networking.address", "243.1.2.3", "240.0.0.0/4"),
    ("networking.address", "fe80::1%eth0", "scoped"),
    ("networking.address", "fe80::1%\n", "scoped"),
    ("networking.address", "fe80::1%" + "x" * 5000, "scoped"),
    ("networking.address", "::ffff:240.0.0.2", "IPv4-mapped"),
    ("networking.advertisedAddress", "0.0.0.0", "unspecified"),
    ("networking.inbound[0].address", "240.0.0.9", "240.0.0.0/4"),
    ("networking.inbound[0].address", "fe80::2%lo", "scoped"),
]


def _placed(field: str, address: str) -> dict:
    body = dataplane("web-1", "10.0.0.1", "web")
    if field == "networking.address":
        body["networking"]["address"] = address
    elif field == "networking.advertisedAddress":
        body["networking"]["advertisedAddress"] = address
    else:
        body["networking"]["inbound"][0]["address"] = address
    return body


@pytest.mark.parametrize(("field", "address", "reason"), ADDRESS_CASES)
async def test_an_address_that_is_no_workloads_is_refused(
    client, default_mesh, field, address, reason
):
    response = await client.put("/meshes/default/dataplanes/web-1", json=_placed(field, address))
    assert response.status_code == 400, response.text
    [cause] = response.json()["causes"]
    assert cause["field"] == field
    assert reason in cause["message"]
    assert len(cause["message"]) < 300  # a 5,000-character scope is not echoed whole
    assert (await client.get("/meshes/default/dataplanes/web-1")).status_code == 404
    applied = await client.post("/apply", json={"items": [_placed(field, address)]})
    assert applied.status_code == 400
    assert applied.json()["causes"][0]["field"] == f"items[0].{field}"
    assert (await client.get("/meshes/default/dataplanes/web-1")).status_code == 404


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.7", "2001:db8::7", "fe80::1"])
async def test_loopback_and_unicast_addresses_are_taken(client, default_mesh, address):
    body = dataplane("web-1", address, "web")
    assert (await client.put("/meshes/default/dataplanes/web-1", json=body)).status_code == 201


async def test_an_address_in_a_configured_vip_range_is_refused(store):
    vips = vip_settings(vip_cidr="10.96.0.0/12")
    app = create_app(Store(store.engine, vips))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
        await http.put("/meshes/default", json=mesh())
        body = dataplane("web-1", "10.96.0.5", "web")
        response = await http.put("/meshes/default/dataplanes/web-1", json=body)
        assert response.status_code == 400
        [cause] = response.json()["causes"]
        assert cause["field"] == "networking.address"
        assert "10.96.0.0/12" in cause["message"]
        ingress = {
            "type": "ZoneIngress",
            "name": "in",
            "networking": {"address": "10.0.0.1", "port": 10001, "advertisedAddress": "10.96.1.1"},
        }
        response = await http.put("/zoneingresses/in", json=ingress)
        assert response.status_code == 400
        assert response.json()["causes"][0]["field"] == "networking.advertisedAddress"


DUPLICATE_YAML = """\
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  address: 10.0.0.2
  inbound:
    - port: 8080
      tags:
        kuma.io/service: web
"""


async def test_yaml_with_a_key_given_twice_is_refused(client, default_mesh):
    response = await client.put(
        "/meshes/default/dataplanes/web-1",
        content=DUPLICATE_YAML,
        headers={"content-type": "application/yaml"},
    )
    assert response.status_code == 400
    [cause] = response.json()["causes"]
    assert '"address"' in cause["message"] and "line 6" in cause["message"]
    assert (await client.get("/meshes/default/dataplanes/web-1")).status_code == 404


async def test_json_with_a_key_given_twice_is_refused(client, default_mesh):
    body = '{"type": "Dataplane", "name": "web-1", "name": "web-2", "networking": {}}'
    response = await client.put(
        "/meshes/default/dataplanes/web-1",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert '"name"' in response.json()["causes"][0]["message"]
    apply = '{"items": [], "items": []}'
    response = await client.post(
        "/apply", content=apply, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert 'key "items" is given twice' in response.json()["causes"][0]["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/meshes/default/dataplanes/%2E%2E",
        "/meshes/%2E%2E/dataplanes/web-1",
        "/meshes/default/dataplanes/.hidden",
        "/meshes/default/dataplanes/UPPER",
        "/meshes/default/dataplanes/a%20b",
        "/meshes/default/traffic-permissions/%2e%2e",
        "/zoneingresses/%2E%2E",
    ],
)
async def test_a_path_name_no_resource_can_have_is_refused(client, default_mesh, path):
    for method in ("GET", "DELETE", "PUT"):
        response = await client.request(method, path, json={})
        assert response.status_code == 400, (method, path, response.text)
        [cause] = response.json()["causes"]
        assert cause["field"] in ("mesh", "name")
    assert (await client.get("/meshes/default")).status_code == 200


@pytest.mark.parametrize(
    ("mesh_services", "message"),
    [
        ({"mode": "Sometimes"}, "must be one of Disabled, Everywhere"),
        ({"mode": "everywhere"}, "must be one of"),
        ({"modes": "Everywhere"}, "unknown field 'modes'"),
    ],
)
async def test_a_mesh_services_mode_kuma_has_not_is_refused(client, mesh_services, message):
    answer = await client.put("/meshes/odd", json=mesh("odd", meshServices=mesh_services))
    assert answer.status_code == 400, answer.text
    [cause] = answer.json()["causes"]
    assert cause["field"] == "meshServices" and message in cause["message"]
    assert (await client.get("/meshes/odd")).status_code == 404
