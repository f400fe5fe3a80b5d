"""One set of write rules: what a standalone, zone or global control plane takes, on
every path a write can come by (PUT, POST /apply, agent connect, heartbeats and
disconnects, liveness, the sync worker's replication), and a path that forgets to ask
still cannot write, because the store checks every change it records."""

from __future__ import annotations

import httpx
import pytest

from registry.agents.liveness import Liveness
from registry.api.app import create_app
from registry.errors import ReadOnly
from registry.schema import parse_resource
from registry.store import Store
from registry.write_rules import GLOBAL, MODES, STANDALONE, ZONE, Origin, check_write, writable
from tests.factories import dataplane, mesh, traffic_permission, zone_ingress
from tests.serve_settings import liveness_settings

KINDS = (
    "Mesh",
    "TrafficPermission",
    "Zone",
    "Dataplane",
    "ZoneIngress",
    "ZoneEgress",
    "MeshService",
    "MeshExternalService",
    "MeshMultiZoneService",
    "HostnameGenerator",
    "MeshTrafficPermission",
)
# Kuma's service model: written and synced where Kuma has them (docs/service-model.md).
EVERYWHERE = {"MeshExternalService", "HostnameGenerator", "MeshTrafficPermission"}
# The rule itself, as DESIGN's multi-zone section gives it: (mode, origin) -> kinds taken.
TAKES = {
    (STANDALONE, Origin.LOCAL): {
        "Mesh",
        "TrafficPermission",
        "Dataplane",
        "ZoneIngress",
        "ZoneEgress",
        "MeshService",
        "MeshMultiZoneService",
        *EVERYWHERE,
    },
    (ZONE, Origin.LOCAL): {"Dataplane", "ZoneIngress", "ZoneEgress", "MeshService", *EVERYWHERE},
    (GLOBAL, Origin.LOCAL): {
        "Mesh",
        "TrafficPermission",
        "Zone",
        "MeshMultiZoneService",
        *EVERYWHERE,
    },
    (STANDALONE, Origin.REPLICATION): set(),
    (ZONE, Origin.REPLICATION): {
        "Mesh",
        "TrafficPermission",
        "ZoneIngress",
        "MeshService",
        "MeshMultiZoneService",
        *EVERYWHERE,
    },
    (GLOBAL, Origin.REPLICATION): {
        "Dataplane",
        "ZoneIngress",
        "ZoneEgress",
        "Zone",
        "MeshService",
        *EVERYWHERE,
    },
}


@pytest.mark.parametrize(("mode", "origin"), sorted(TAKES))
def test_the_rule(mode, origin):
    for kind in KINDS:
        assert writable(mode, kind, origin) == (kind in TAKES[(mode, origin)]), kind
        if kind in TAKES[(mode, origin)]:
            check_write(mode, kind, origin)
        else:
            with pytest.raises(ReadOnly):
                check_write(mode, kind, origin)


def test_a_refusal_says_where_to_write():
    with pytest.raises(ReadOnly, match="replicated from the zone control planes.*dp run --cp"):
        check_write(GLOBAL, "Dataplane")
    with pytest.raises(ReadOnly, match="replicated from the global control plane"):
        check_write(ZONE, "Mesh")
    with pytest.raises(ReadOnly, match="global control plane only"):
        check_write(STANDALONE, "Zone")


# A document of each kind, written at its Kuma path (None: only through POST /apply).
DOCUMENTS = {
    "Mesh": (mesh("other"), "/meshes/other"),
    "TrafficPermission": (
        traffic_permission("all", ["*"], ["*"]),
        "/meshes/default/traffic-permissions/all",
    ),
    "Zone": ({"type": "Zone", "name": "zone-b"}, "/zones/zone-b"),
    "Dataplane": (dataplane("web-1", "10.0.0.1"), "/meshes/default/dataplanes/web-1"),
    "ZoneIngress": (zone_ingress("in-1", None, "web"), "/zoneingresses/in-1"),
    "ZoneEgress": (
        {
            "type": "ZoneEgress",
            "name": "out-1",
            "networking": {"address": "10.0.0.9", "port": 10002},
        },
        "/zoneegresses/out-1",
    ),
    "MeshService": (
        {"type": "MeshService", "name": "redis", "spec": {"ports": [{"port": 6379}]}},
        "/meshes/default/meshservices/redis",
    ),
    "MeshExternalService": (
        {"type": "MeshExternalService", "name": "httpbin", "spec": {"match": {"port": 80}}},
        "/meshes/default/meshexternalservices/httpbin",
    ),
    "MeshMultiZoneService": (
        {
            "type": "MeshMultiZoneService",
            "name": "redis-all",
            "spec": {
                "selector": {"meshService": {"matchLabels": {"app": "redis"}}},
                "ports": [{"port": 6379}],
            },
        },
        "/meshes/default/meshmultizoneservices/redis-all",
    ),
    "HostnameGenerator": (
        {
            "type": "HostnameGenerator",
            "name": "all",
            "spec": {"selector": {"meshService": {}}, "template": "{{ .Name }}.all.mesh.local"},
        },
        "/hostnamegenerators/all",
    ),
    "MeshTrafficPermission": (
        {
            "type": "MeshTrafficPermission",
            "name": "allow-all",
            "spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]},
        },
        "/meshes/default/meshtrafficpermissions/allow-all",
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", ["PUT", "POST /apply"])
async def test_api_writes_follow_the_rule(store, mode, path):
    await Store(store.engine, store.vips, mode=STANDALONE).ensure_mesh("default")
    app = create_app(Store(store.engine, store.vips, mode=mode))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
        for kind, (document, url) in DOCUMENTS.items():
            if path == "PUT":
                response = await http.put(url, json=document)
            else:
                response = await http.post("/apply", json={"items": [document]})
            expected = writable(mode, kind)
            assert response.is_success == expected, (kind, response.status_code, response.text)
            if not expected:
                assert response.status_code == 405
                assert (await http.get(url)).status_code == 404, kind
            delete = await http.delete(url)
            assert delete.status_code == (200 if expected else 405), (kind, delete.text)


@pytest.mark.parametrize("mode", MODES)
async def test_agent_connect_heartbeat_and_disconnect_follow_the_rule(store, mode):
    await Store(store.engine, store.vips, mode=STANDALONE).ensure_mesh("default")
    liveness = Liveness(Store(store.engine, store.vips, mode=mode), liveness_settings())
    resource = parse_resource(dataplane("web-1", "10.0.0.1"))
    if mode == GLOBAL:
        for call in (
            liveness.connect(resource),
            liveness.heartbeat(("default", "web-1")),
            liveness.disconnect(("default", "web-1")),
        ):
            with pytest.raises(ReadOnly, match="dp run --cp"):
                await call
        assert (await store.list_dataplanes("default")).total == 0
    else:
        assert await liveness.connect(resource) is True
        await liveness.heartbeat(("default", "web-1"))
        assert await liveness.disconnect(("default", "web-1")) is True


async def test_a_path_that_forgets_to_ask_still_cannot_write(store):
    """The store checks every change it records: a write straight through it, as a new
    route or worker might make, is refused all the same, and nothing of it stays."""
    on_global = Store(store.engine, store.vips, mode=GLOBAL)
    await on_global.ensure_mesh("default")
    with pytest.raises(ReadOnly):
        await on_global.put(parse_resource(dataplane("web-1", "10.0.0.1")))
    with pytest.raises(ReadOnly):
        async with on_global.writing() as transaction:
            await on_global.put_in(transaction, parse_resource(dataplane("web-2", "10.0.0.2")))
    assert (await on_global.list_dataplanes("default")).total == 0
    on_zone = Store(store.engine, store.vips, mode=ZONE)
    with pytest.raises(ReadOnly):
        await on_zone.put(parse_resource(mesh("other")))


async def test_replication_writes_what_the_sync_worker_brings(store):
    on_global = Store(store.engine, store.vips, mode=GLOBAL)
    await on_global.ensure_mesh("default")
    async with on_global.writing(Origin.REPLICATION) as transaction:
        await on_global.put_in(
            transaction, parse_resource(dataplane("zone-a.web-1", "10.0.0.1", "web"))
        )
    assert (await on_global.list_dataplanes("default")).total == 1
    # ...but not what flows the other way.
    with pytest.raises(ReadOnly):
        async with on_global.writing(Origin.REPLICATION) as transaction:
            await on_global.put_in(transaction, parse_resource(mesh("other")))
