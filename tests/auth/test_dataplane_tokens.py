"""Dataplane tokens: a mesh and a set of services, and only dataplanes of those services.

Issue 8's acceptance: a token for service `web` cannot register a dataplane with an
inbound for `db` (403), and cannot delete another service's dataplane.
"""

from __future__ import annotations

import pytest
from fastapi import APIRouter

from registry.auth.scopes import Scope, requires
from tests.auth.conftest import ADMIN, dataplane_token
from tests.factories import dataplane

WEB_TOKEN = 'dataplane token for services [web] in mesh "default"'


@pytest.fixture
async def app(api):
    return api()


@pytest.fixture
async def admin(app):
    return await app.token_client(ADMIN)


@pytest.fixture
async def web(app):
    return await app.token_client(dataplane_token("web"))


def refused(response, *fragments: str) -> bool:
    body = response.json()
    assert response.status_code == 403, body
    assert body["title"] == "Forbidden"
    for fragment in fragments:
        assert fragment in body["details"], body["details"]
    return True


async def test_a_web_token_cannot_register_an_inbound_for_db(web, admin):
    path = "/meshes/default/dataplanes/web-1"

    response = await web.put(path, json=dataplane("web-1", "10.0.0.1", "web", "db"))

    assert refused(response, WEB_TOKEN, 'may not register an inbound of service "db"')
    assert (await admin.get(path)).status_code == 404
    only_db = await web.put(
        "/meshes/default/dataplanes/db-1", json=dataplane("db-1", "10.0.0.1", "db")
    )
    assert refused(only_db, 'service "db"')


async def test_a_web_token_cannot_delete_or_take_over_a_db_dataplane(web, admin):
    path = "/meshes/default/dataplanes/db-1"
    assert (await admin.put(path, json=dataplane("db-1", "10.0.0.1", "db"))).status_code == 201

    assert refused(await web.delete(path), 'may not delete dataplane "db-1": it serves "db"')
    taken_over = await web.put(path, json=dataplane("db-1", "10.0.0.1", "web"))
    assert refused(taken_over, 'may not update dataplane "db-1": it serves "db"')

    stored = (await admin.get(path)).json()
    assert stored["networking"]["inbound"][0]["tags"]["kuma.io/service"] == "db"


async def test_a_web_token_registers_updates_and_deletes_its_own_dataplanes(web, admin):
    path = "/meshes/default/dataplanes/web-1"
    assert (await web.put(path, json=dataplane("web-1", "10.0.0.1", "web"))).status_code == 201
    assert (
        await web.put(path, json=dataplane("web-1", "10.0.0.1", "web", "web"))
    ).status_code == 200
    assert (await admin.get(path)).status_code == 200
    assert (await web.delete(path)).status_code == 200
    assert (await admin.get(path)).status_code == 404
    # A dataplane that is not there is 404, as for anyone.
    assert (await web.delete(path)).status_code == 404


async def test_a_token_for_several_services_registers_dataplanes_serving_any_of_them(app):
    both = await app.token_client(dataplane_token("web", "api"))
    path = "/meshes/default/dataplanes/front-1"
    assert (
        await both.put(path, json=dataplane("front-1", "10.0.0.1", "web", "api"))
    ).status_code == 201
    assert refused(await both.put(path, json=dataplane("front-1", "10.0.0.1", "web", "db")), '"db"')


async def test_a_dataplane_token_acts_in_its_own_mesh_only(app, admin, web):
    assert (await admin.put("/meshes/other", json={"type": "Mesh"})).status_code == 201
    response = await web.put(
        "/meshes/other/dataplanes/web-1", json=dataplane("web-1", "10.0.0.1", "web", mesh="other")
    )
    assert refused(response, WEB_TOKEN, 'may not act in mesh "other"')
    assert refused(await web.get("/meshes/other/dns-records"), 'mesh "other"')
    items = [dataplane("web-1", "10.0.0.1", "web", mesh="other")]
    assert refused(await web.post("/apply", json={"items": items}), 'in mesh "other"')


async def test_a_dataplane_token_reads_only_its_meshs_dns_records(web):
    assert (await web.get("/meshes/default/dns-records")).status_code == 200
    for path in ("/meshes", "/meshes/default/dataplanes", "/meshes/default/services", "/"):
        assert refused(await web.get(path), f"may not GET {path}")


async def test_a_route_added_later_is_closed_to_tokens_until_it_declares_a_scope(app, web):
    router = APIRouter()

    @router.get("/meshes/{mesh}/undeclared")
    async def undeclared(mesh: str) -> dict:
        return {}

    @router.get("/meshes/{mesh}/declared")
    @requires(Scope.MESH_RECORDS)
    async def declared(mesh: str) -> dict:
        return {}

    @router.get("/open")
    @requires(Scope.PUBLIC)
    async def open_to_all() -> dict:
        return {}

    app.app.include_router(router)
    assert refused(await web.get("/meshes/default/undeclared"), "may not GET")
    assert (await web.get("/meshes/default/declared")).status_code == 200
    assert refused(await web.get("/meshes/other/declared"), 'may not act in mesh "other"')
    anonymous = app.client()
    assert (await anonymous.get("/open")).status_code == 200
    assert (await anonymous.get("/meshes/default/declared")).status_code == 401


async def test_a_dataplane_token_writes_nothing_but_dataplanes(web):
    assert refused(await web.put("/meshes/default", json={"type": "Mesh"}), "may not PUT")
    ingress = {"networking": {"address": "10.0.0.1", "port": 10001}}
    assert refused(await web.put("/zoneingresses/ingress-1", json=ingress), "may not PUT")
    items = [{"type": "Mesh", "name": "another"}]
    assert refused(await web.post("/apply", json={"items": items}), "write Mesh resources")


async def test_apply_checks_every_item_and_writes_none_when_one_is_refused(web, admin):
    items = [dataplane("web-1", "10.0.0.1", "web"), dataplane("db-1", "10.0.0.1", "db")]

    response = await web.post("/apply", json={"items": items})

    assert refused(response, "items[1]: dataplane token", '"db"')
    assert (await admin.get("/meshes/default/dataplanes/web-1")).status_code == 404
    ok = await web.post("/apply", json={"items": items[:1]})
    assert ok.status_code == 200 and ok.json()["items"][0]["status"] == "Created"


async def test_a_dataplane_token_may_not_claim_a_zone(web):
    labelled = dataplane("web-1", "10.0.0.1", "web", labels={"kuma.io/zone": "zone-b"})
    response = await web.put("/meshes/default/dataplanes/web-1", json=labelled)
    assert refused(response, 'labelled kuma.io/zone: "zone-b"')


async def test_the_agent_routes_hold_a_dataplane_token_to_its_services(web, admin):
    base = "/meshes/default/dataplanes"
    assert (
        await admin.put(f"{base}/db-1", json=dataplane("db-1", "10.0.0.1", "db"))
    ).status_code == 201

    assert (
        await web.post(f"{base}/web-1/connect", json=dataplane("web-1", "10.0.0.1", "web"))
    ).status_code == 201
    assert (await web.post(f"{base}/web-1/heartbeat")).status_code == 204
    connect_db = await web.post(f"{base}/db-2/connect", json=dataplane("db-2", "10.0.0.1", "db"))
    assert refused(connect_db, 'service "db"')
    assert refused(await web.post(f"{base}/db-1/heartbeat"), 'send heartbeats for dataplane "db-1"')
    assert refused(await web.post(f"{base}/db-1/disconnect"), 'disconnect dataplane "db-1"')
    assert refused(await web.get(f"{base}+insights"), "may not GET")

    assert (await web.post(f"{base}/web-1/disconnect")).json() == {"deleted": True}
    assert (await admin.get(f"{base}/db-1")).status_code == 200
