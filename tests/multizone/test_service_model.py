"""Kuma's service model across zones, end to end: global, zone-a and zone-b control
planes and the two zones' `meshdns sync` workers, all real, on Postgres (the deployment
of tests/multizone/test_multizone.py, started anew for this module).

A mesh whose meshServices.mode is Exclusive; a `redis` dataplane and a ZoneIngress in
zone-a: zone-a generates MeshService `redis`, the sync takes it to global as
`redis-<hash>` and on to zone-b. From zone-b's `web` dataplane (dig -b its address),
`redis.svc.zone-a.mesh.local` answers only under mTLS and a MeshTrafficPermission (both
written on global) allowing web: a VIP of zone-b's, and SRV to zone-a's ingress. A
MeshMultiZoneService on global answers `redis.mzsvc.mesh.local` in each zone.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

import httpx

from registry.meshservice.naming import MAX_LABEL_NAME, hashed_name
from tests.factories import dataplane
from tests.helpers import eventually
from tests.multizone.test_multizone import (  # noqa: F401 - the module's deployment fixtures
    BACKEND_ADDRESS,
    INGRESS_ADDRESS,
    INGRESS_PUBLIC,
    INGRESS_PUBLIC_PORT,
    MTLS,
    OTHER_ADDRESS,
    WEB_ADDRESS,
    Deployment,
    ask,
    deployed,
    deployment,
    put,
    shared_deployment,
)

MESH_SERVICES = IPv4Network("241.0.0.0/8")
MULTIZONE_SERVICES = IPv4Network("243.0.0.0/8")
LOCAL_REDIS_ADDRESS = "127.0.0.24"  # zone-b's own redis
REDIS = hashed_name("default", "redis", "zone-a", max_length=MAX_LABEL_NAME)
EXCLUSIVE = {"meshServices": {"mode": "Exclusive"}}


def get(api: str, path: str) -> Any:
    answer = httpx.get(api + path, timeout=10)
    return answer.json() if answer.status_code == 200 else None


def names(api: str, kind_path: str) -> list[str]:
    listed = get(api, f"/meshes/default/{kind_path}") or {"items": []}
    return sorted(item["name"] for item in listed["items"])


def mesh_traffic_permission(source: str, target: str) -> dict[str, Any]:
    return {
        "type": "MeshTrafficPermission",
        "mesh": "default",
        "name": f"{source}-to-{target}",
        "spec": {
            "targetRef": {"kind": "MeshService", "name": target},
            "from": [
                {
                    "targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/service": source}},
                    "default": {"action": "Allow"},
                }
            ],
        },
    }


def srv(server: Any, name: str) -> list[tuple[int, int, str]]:
    """The SRV answer's (priority, port, target address) from zone-b's web dataplane."""
    status, records = ask(server, name, "SRV")
    assert status == "NOERROR", (name, status)
    found = []
    for record in records:
        priority, _weight, port, target = record.split()
        _, addresses = ask(server, target, "A")
        found.append((int(priority), int(port), addresses[0]))
    return sorted(found)


@deployed
def test_a_zones_mesh_service_answers_in_the_other_zone_under_mtls_and_a_permission(
    deployment: Deployment,  # noqa: F811 - the imported fixture
) -> None:
    servers = deployment.servers
    zone_a, zone_b, global_cp = servers["zone-a"], servers["zone-b"], servers["global"]
    mesh = {"type": "Mesh", "name": "default", **EXCLUSIVE}
    assert put(global_cp.api, "/meshes/default", mesh).status_code == 200
    for zone in (zone_a, zone_b):
        eventually(
            lambda zone=zone: (get(zone.api, "/meshes/default") or {}).get("meshServices"),
            what="the Exclusive mesh in the zones",
        )
    written = [
        (
            zone_a,
            "/meshes/default/dataplanes/redis-1",
            dataplane("redis-1", BACKEND_ADDRESS, "redis", port=6379),
        ),
        (
            zone_a,
            "/zoneingresses/ingress-1",
            {
                "type": "ZoneIngress",
                "name": "ingress-1",
                "networking": {
                    "address": INGRESS_ADDRESS,
                    "port": 10001,
                    "advertisedAddress": INGRESS_PUBLIC,
                    "advertisedPort": INGRESS_PUBLIC_PORT,
                },
            },
        ),
        (zone_b, "/meshes/default/dataplanes/web-1", dataplane("web-1", WEB_ADDRESS, "web")),
        (zone_b, "/meshes/default/dataplanes/db-1", dataplane("db-1", OTHER_ADDRESS, "db")),
        (
            zone_b,
            "/meshes/default/dataplanes/redis-b",
            dataplane("redis-b", LOCAL_REDIS_ADDRESS, "redis", port=6379),
        ),
    ]
    for server, path, body in written:
        assert put(server.api, path, body).status_code == 201, path

    # zone-a's generated redis: on global under its hashed name, labelled with its zone,
    # and in zone-b under the same name; never back in zone-a.
    eventually(lambda: REDIS in names(zone_b.api, "meshservices"), what="redis in zone-b")
    on_global = get(global_cp.api, f"/meshes/default/meshservices/{REDIS}")
    assert on_global["labels"]["kuma.io/zone"] == "zone-a"
    assert on_global["labels"]["kuma.io/origin"] == "zone"
    assert on_global["labels"]["kuma.io/display-name"] == "redis"
    in_b = get(zone_b.api, f"/meshes/default/meshservices/{REDIS}")
    assert in_b["labels"]["kuma.io/origin"] == "global"
    vip = in_b["status"]["vips"][0]["ip"]
    assert IPv4Address(vip) in MESH_SERVICES
    assert {address["hostname"] for address in in_b["status"]["addresses"]} == {
        "redis.svc.zone-a.mesh.local"
    }
    # zone-b's own (generated there too: redis, web, db) in zone-a.
    zone_b_redis = hashed_name("default", "redis", "zone-b", max_length=MAX_LABEL_NAME)
    held = eventually(
        lambda: (found := names(zone_a.api, "meshservices")) and zone_b_redis in found and found,
        what="zone-b's redis in zone-a",
    )
    assert "redis" in held and REDIS not in held

    # No mTLS, no permission: zone-b's web does not see it.
    name = "redis.svc.zone-a.mesh.local"
    assert ask(zone_b, name, "A") == ("NXDOMAIN", [])
    # mTLS on global: still no permission.
    mesh["mtls"] = MTLS
    assert put(global_cp.api, "/meshes/default", mesh).status_code == 200
    eventually(
        lambda: (get(zone_b.api, "/meshes/default") or {}).get("mtls"), what="mTLS in zone-b"
    )
    assert ask(zone_b, name, "A") == ("NXDOMAIN", [])
    # A MeshTrafficPermission on global letting web reach redis.
    permission = mesh_traffic_permission("web", "redis")
    path = "/meshes/default/meshtrafficpermissions/web-to-redis"
    assert put(global_cp.api, path, permission).status_code == 201
    answered = eventually(
        lambda: (answer := ask(zone_b, name, "A"))[0] == "NOERROR" and answer,
        what=f"{name} from zone-b's web",
    )
    assert answered == ("NOERROR", [vip])
    assert srv(zone_b, f"_6379._tcp.{name}") == [(1, INGRESS_PUBLIC_PORT, INGRESS_PUBLIC)]
    # The permission names web: db's dataplane still does not see it.
    assert ask(zone_b, name, "A", source=OTHER_ADDRESS) == ("NXDOMAIN", [])

    # A MeshMultiZoneService on global: a VIP of each zone's own, local endpoints first.
    multizone = {
        "type": "MeshMultiZoneService",
        "mesh": "default",
        "name": "redis",
        "spec": {
            "selector": {"meshService": {"matchLabels": {"kuma.io/display-name": "redis"}}},
            "ports": [{"port": 6379, "appProtocol": "tcp"}],
        },
    }
    assert (
        put(global_cp.api, "/meshes/default/meshmultizoneservices/redis", multizone).status_code
        == 201
    )
    vips = {}
    for zone, source in ((zone_a, BACKEND_ADDRESS), (zone_b, WEB_ADDRESS)):
        status, answer = eventually(
            lambda zone=zone, source=source: (
                (found := ask(zone, "redis.mzsvc.mesh.local", "A", source=source))[0] == "NOERROR"
                and found
            ),
            what="redis.mzsvc.mesh.local",
        )
        assert len(answer) == 1 and IPv4Address(answer[0]) in MULTIZONE_SERVICES
        vips[zone.api] = answer[0]
    eventually(
        lambda: len(srv(zone_b, "_6379._tcp.redis.mzsvc.mesh.local")) == 2,
        what="both zones' redis behind the MeshMultiZoneService in zone-b",
    )
    assert srv(zone_b, "_6379._tcp.redis.mzsvc.mesh.local") == [
        (0, 6379, LOCAL_REDIS_ADDRESS),
        (1, INGRESS_PUBLIC_PORT, INGRESS_PUBLIC),
    ]

    # zone-b's sync worker killed; a change on global meanwhile; started again, it
    # converges: the permission's deletion takes the name away again.
    deployment.workers["zone-b"].kill()
    assert httpx.delete(global_cp.api + path, timeout=10).status_code == 200
    deployment.workers["zone-b"].start()
    eventually(
        lambda: ask(zone_b, name, "A") == ("NXDOMAIN", []),
        what=f"{name} gone from zone-b's web with the permission",
    )
    assert names(zone_b.api, "meshtrafficpermissions") == []
