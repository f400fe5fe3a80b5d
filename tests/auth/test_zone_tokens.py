"""Zone tokens: a zone control plane's own dataplanes, ingresses and egresses, on it only.

Issue 8's acceptance: a zone token cannot write another zone's records.
"""

from __future__ import annotations

import pytest

from tests.auth.conftest import ADMIN, zone_token
from tests.auth.test_dataplane_tokens import refused
from tests.factories import dataplane

ZONE_A = 'zone token for zone "zone-a"'


def ingress(zone: str | None) -> dict:
    body: dict = {"networking": {"address": "10.1.0.1", "port": 10001}}
    return body | ({"zone": zone} if zone else {})


@pytest.fixture
async def app(api):
    return api(mode="zone", zone="zone-a")


@pytest.fixture
async def admin(app):
    return await app.token_client(ADMIN)


@pytest.fixture
async def zone_a(app):
    return await app.token_client(zone_token("zone-a"))


@pytest.mark.parametrize("collection", ["zoneingresses", "zoneegresses"])
async def test_a_zone_token_cannot_write_another_zones_ingress_or_egress(zone_a, admin, collection):
    kind = {"zoneingresses": "ZoneIngress", "zoneegresses": "ZoneEgress"}[collection]

    response = await zone_a.put(f"/{collection}/x-b", json=ingress("zone-b"))

    assert refused(response, ZONE_A, f'may not write {kind} "x-b" of zone "zone-b"')
    assert (await admin.get(f"/{collection}/x-b")).status_code == 404
    assert (await zone_a.put(f"/{collection}/x-a", json=ingress("zone-a"))).status_code == 201
    assert (await zone_a.put(f"/{collection}/x-own", json=ingress(None))).status_code == 201
    assert (await zone_a.delete(f"/{collection}/x-a")).status_code == 200

    # One of zone-b's, written by an admin: the zone-a token may neither replace nor delete it.
    assert (await admin.put(f"/{collection}/x-b", json=ingress("zone-b"))).status_code == 201
    assert refused(await zone_a.put(f"/{collection}/x-b", json=ingress("zone-a")), 'zone "zone-b"')
    assert refused(
        await zone_a.delete(f"/{collection}/x-b"), f'delete {kind} "x-b" of zone "zone-b"'
    )
    assert (await admin.get(f"/{collection}/x-b")).json()["zone"] == "zone-b"


async def test_a_zone_token_cannot_write_another_zones_dataplanes(zone_a, admin):
    base = "/meshes/default/dataplanes"
    other = dataplane("db-1", "10.0.0.1", "db", labels={"kuma.io/zone": "zone-b"})

    assert refused(await zone_a.put(f"{base}/db-1", json=other), 'labelled kuma.io/zone: "zone-b"')
    assert refused(await zone_a.post("/apply", json={"items": [other]}), "items[0]: " + ZONE_A)

    # Any service of its own zone, labelled or not.
    own = dataplane("web-1", "10.0.0.1", "web", labels={"kuma.io/zone": "zone-a"})
    assert (await zone_a.put(f"{base}/web-1", json=own)).status_code == 201
    assert (
        await zone_a.put(f"{base}/db-2", json=dataplane("db-2", "10.0.0.1", "db"))
    ).status_code == 201
    assert (await zone_a.delete(f"{base}/db-2")).status_code == 200
    # A zone-b dataplane an admin put here stays out of its reach.
    assert (await admin.put(f"{base}/db-1", json=other)).status_code == 201
    assert refused(await zone_a.delete(f"{base}/db-1"), 'dataplane "db-1" of zone "zone-b"')


async def test_a_zone_token_is_refused_on_another_zones_control_plane(api):
    for options, where in (
        ({"mode": "zone", "zone": "zone-b"}, 'control plane of zone "zone-b"'),
        ({"mode": "standalone"}, "control plane of a standalone"),
        ({"mode": "global"}, "control plane of a global"),
    ):
        elsewhere = api(**options)
        client = await elsewhere.token_client(zone_token("zone-a"))
        put = await client.put(
            "/meshes/default/dataplanes/web-1", json=dataplane("web-1", "10.0.0.1", "web")
        )
        assert refused(put, ZONE_A, "is not valid on the " + where)
        assert refused(await client.get("/meshes"), where)


async def test_a_zone_token_writes_no_meshes_permissions_or_zones(zone_a):
    permission = {
        "sources": [{"match": {"kuma.io/service": "*"}}],
        "destinations": [{"match": {"kuma.io/service": "*"}}],
    }
    for method, path, body in (
        ("PUT", "/meshes/other", {"type": "Mesh"}),
        ("DELETE", "/meshes/default", None),
        ("PUT", "/meshes/default/traffic-permissions/all", permission),
        ("PUT", "/zones/zone-a", {}),
    ):
        response = await zone_a.request(method, path, json=body)
        assert refused(response, f"may not {method} {path}")
    items = [{"type": "Mesh", "name": "other"}]
    assert refused(await zone_a.post("/apply", json={"items": items}), "write Mesh resources")


async def test_a_zone_token_reads_its_control_plane(zone_a):
    assert (await zone_a.get("/meshes")).status_code == 200
    assert (await zone_a.get("/meshes/default/dataplanes")).status_code == 200
    assert (await zone_a.get("/zoneingresses")).status_code == 200
