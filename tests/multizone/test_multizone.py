"""Multi-zone end to end: one Postgres server, three databases (global, zone-a, zone-b),
three `meshdns serve` processes and two `meshdns sync` workers, all real, on loopback.

A `backend` dataplane and a zone ingress are registered in zone-a; a dataplane client in
zone-b (a `web` dataplane, querying from its own address) must not see `backend.mesh`
while the mesh has no mTLS, and must see it, through zone-a's ingress, once global
enables mTLS and a TrafficPermission allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import httpx
import pytest

from tests.helpers import Meshdns, dig, eventually
from tests.live.livetesting import dataplane
from tests.multizone.conftest import SyncProcess

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

BACKEND_ADDRESS = "127.0.0.11"
INGRESS_ADDRESS = "127.0.0.12"
INGRESS_PUBLIC = "127.0.0.13"
INGRESS_PUBLIC_PORT = 10002
WEB_ADDRESS = "127.0.0.22"
OTHER_ADDRESS = "127.0.0.23"
MTLS = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}


def put(api: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.put(api + path, json=body, timeout=10)


def ask(
    server: Meshdns, name: str, rdtype: str, source: str = WEB_ADDRESS
) -> tuple[str, list[str]]:
    """The real dig, from `source`: the status and the answer section's records."""
    output = dig(server.dns_port, "-b", source, name, rdtype, "+noall", "+comments", "+answer")
    status = next(
        (
            line.split("status: ")[1].split(",")[0]
            for line in output.splitlines()
            if "status:" in line
        ),
        "NO REPLY",
    )
    answers = [
        line.split(None, 4)[4] for line in output.splitlines() if line and not line.startswith(";")
    ]
    return status, answers


@pytest.fixture
def deployment(
    databases: Callable[[], str],
    start_meshdns: Callable[..., Meshdns],
    start_sync: Callable[..., SyncProcess],
) -> dict[str, Any]:
    urls = {name: databases() for name in ("global", "zone-a", "zone-b")}
    servers = {
        "global": start_meshdns(urls["global"], "--mode", "global"),
        "zone-a": start_meshdns(urls["zone-a"], "--mode", "zone", "--zone", "zone-a"),
        "zone-b": start_meshdns(urls["zone-b"], "--mode", "zone", "--zone", "zone-b"),
    }
    workers = {zone: start_sync(zone, urls[zone], urls["global"]) for zone in ("zone-a", "zone-b")}
    # The default mesh comes from global.
    for zone in ("zone-a", "zone-b"):
        eventually(
            lambda zone=zone: httpx.get(servers[zone].api + "/meshes/default").status_code == 200,
            what=f"mesh default replicated to {zone}",
        )
    return {"urls": urls, "servers": servers, "workers": workers}


def test_backend_in_zone_a_is_reachable_from_zone_b_only_under_mtls_and_a_permission(
    deployment: dict[str, Any],
) -> None:
    servers = deployment["servers"]
    zone_a, zone_b, global_cp = servers["zone-a"], servers["zone-b"], servers["global"]
    assert (
        put(
            zone_a.api,
            "/meshes/default/dataplanes/backend-1",
            dataplane("backend-1", "backend", BACKEND_ADDRESS),
        ).status_code
        == 201
    )
    ingress = {
        "type": "ZoneIngress",
        "name": "ingress-1",
        "networking": {
            "address": INGRESS_ADDRESS,
            "port": 10001,
            "advertisedAddress": INGRESS_PUBLIC,
            "advertisedPort": INGRESS_PUBLIC_PORT,
        },
    }
    assert put(zone_a.api, "/zoneingresses/ingress-1", ingress).status_code == 201
    assert (
        put(
            zone_b.api, "/meshes/default/dataplanes/web-1", dataplane("web-1", "web", WEB_ADDRESS)
        ).status_code
        == 201
    )
    assert (
        put(
            zone_b.api, "/meshes/default/dataplanes/db-1", dataplane("db-1", "db", OTHER_ADDRESS)
        ).status_code
        == 201
    )

    # zone-a's ingress reaches zone-b, offering backend (computed in zone-a).
    def offered() -> Any:
        items = httpx.get(zone_b.api + "/zoneingresses").json()["items"]
        return [item for item in items if item.get("availableServices")]

    ingresses = eventually(offered, what="zone-a's ingress with its services in zone-b")
    assert [i["name"] for i in ingresses] == ["zone-a.ingress-1"]
    assert ingresses[0]["zone"] == "zone-a"
    assert ingresses[0]["availableServices"] == [
        {"tags": {"kuma.io/service": "backend"}, "instances": 1, "mesh": "default"}
    ]
    # Global has both zones' dataplanes, labelled with their zone.
    names = eventually(
        lambda: (
            {
                item["name"]: item.get("labels")
                for item in httpx.get(global_cp.api + "/meshes/default/dataplanes").json()["items"]
            }
            if len(httpx.get(global_cp.api + "/meshes/default/dataplanes").json()["items"]) == 3
            else None
        ),
        what="three dataplanes on global",
    )
    assert names["zone-a.backend-1"]["kuma.io/zone"] == "zone-a"
    assert names["zone-b.web-1"]["kuma.io/zone"] == "zone-b"
    # Global's services count endpoints by zone (`meshdns get services`); a zone's, its own.
    services = httpx.get(global_cp.api + "/meshes/default/services").json()["items"]
    assert {item["name"]: item["zones"] for item in services} == {
        "backend": {"zone-a": 1},
        "db": {"zone-b": 1},
        "web": {"zone-b": 1},
    }
    listed = zone_a.cli("get", "services")
    assert listed.returncode == 0, listed.stderr
    assert "ENDPOINTS BY ZONE" in listed.stdout and "zone-a=1" in listed.stdout, listed.stdout
    # A zone never receives its own records back.
    assert [i["name"] for i in httpx.get(zone_a.api + "/zoneingresses").json()["items"]] == [
        "ingress-1"
    ]

    # No mTLS: backend does not exist for zone-b's clients.
    assert ask(zone_b, "backend.mesh", "A") == ("NXDOMAIN", [])
    assert ask(zone_b, "_backend._tcp.mesh", "SRV")[0] == "NXDOMAIN"
    # It does in zone-a, locally.
    assert ask(zone_a, "backend.endpoints.mesh", "A", source="127.0.0.1") == (
        "NOERROR",
        [BACKEND_ADDRESS],
    )

    # mTLS on at global, no permission yet: still nothing.
    assert (
        put(
            global_cp.api, "/meshes/default", {"type": "Mesh", "name": "default", "mtls": MTLS}
        ).status_code
        == 200
    )
    eventually(
        lambda: httpx.get(zone_b.api + "/meshes/default").json().get("mtls"), what="mTLS in zone-b"
    )
    assert ask(zone_b, "backend.mesh", "A") == ("NXDOMAIN", [])

    # A permission for web only.
    permission = {
        "type": "TrafficPermission",
        "mesh": "default",
        "name": "web-to-backend",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "backend"}}],
    }
    assert (
        put(
            global_cp.api, "/meshes/default/traffic-permissions/web-to-backend", permission
        ).status_code
        == 201
    )
    status, vips = eventually(
        lambda: (answer := ask(zone_b, "backend.mesh", "A"))[0] == "NOERROR" and answer,
        what="backend.mesh in zone-b",
    )
    assert len(vips) == 1 and IPv4Address(vips[0]) in IPv4Network("240.0.0.0/4")
    status, srv = ask(zone_b, "_backend._tcp.mesh", "SRV")
    assert status == "NOERROR"
    assert len(srv) == 1
    priority, weight, port, target = srv[0].split()
    assert (priority, port) == ("1", str(INGRESS_PUBLIC_PORT))
    assert ask(zone_b, target, "A") == ("NOERROR", [INGRESS_PUBLIC])
    assert ask(zone_b, "backend.endpoints.mesh", "A") == ("NOERROR", [INGRESS_PUBLIC])
    # The permission names web: db's dataplane still sees no backend.
    assert ask(zone_b, "backend.mesh", "A", source=OTHER_ADDRESS) == ("NXDOMAIN", [])

    # Global shows both zones online.
    zones = eventually(
        lambda: (
            {
                z["name"]: z["status"]
                for z in httpx.get(global_cp.api + "/zones+insights").json()["items"]
            }
            if len(httpx.get(global_cp.api + "/zones+insights").json()["items"]) == 2
            else None
        ),
        what="two zones on global",
    )
    assert zones == {"zone-a": "Online", "zone-b": "Online"}

    # Global and the sync workers down: zone-b keeps answering, remote service included.
    for worker in deployment["workers"].values():
        worker.kill()
    global_cp.stop()
    assert ask(zone_b, "backend.mesh", "A") == ("NOERROR", vips)
    assert ask(zone_b, "_backend._tcp.mesh", "SRV") == ("NOERROR", srv)


def test_disabling_a_zone_removes_its_ingress_from_the_other_zones(
    deployment: dict[str, Any],
) -> None:
    servers = deployment["servers"]
    zone_a, zone_b, global_cp = servers["zone-a"], servers["zone-b"], servers["global"]
    ingress = {
        "type": "ZoneIngress",
        "name": "ingress-1",
        "networking": {"address": INGRESS_ADDRESS, "port": 10001},
    }
    assert put(zone_a.api, "/zoneingresses/ingress-1", ingress).status_code == 201

    def ingress_names() -> list[str]:
        return [i["name"] for i in httpx.get(zone_b.api + "/zoneingresses").json()["items"]]

    eventually(lambda: ingress_names() == ["zone-a.ingress-1"], what="ingress in zone-b")
    eventually(
        lambda: httpx.get(global_cp.api + "/zones/zone-a").status_code == 200,
        what="zone-a on global",
    )
    listed = global_cp.cli("get", "zones")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in listed.stdout.splitlines()[1:]}
    assert rows["zone-a"] == ["Online", "yes"]
    assert (
        put(
            global_cp.api, "/zones/zone-a", {"type": "Zone", "name": "zone-a", "enabled": False}
        ).status_code
        == 200
    )
    eventually(lambda: ingress_names() == [], what="ingress gone from zone-b")
    rows = {
        line.split()[0]: line.split()[1:3]
        for line in global_cp.cli("get", "zones").stdout.splitlines()[1:]
    }
    assert rows["zone-a"] == ["Online", "no"]
    assert (
        put(
            global_cp.api, "/zones/zone-a", {"type": "Zone", "name": "zone-a", "enabled": True}
        ).status_code
        == 200
    )
    eventually(lambda: ingress_names() == ["zone-a.ingress-1"], what="ingress back in zone-b")


@pytest.mark.parametrize(
    ("server", "path", "body", "refused"),
    [
        ("zone-a", "/meshes/other", {"type": "Mesh", "name": "other"}, "Mesh"),
        (
            "zone-a",
            "/meshes/default/traffic-permissions/all",
            {
                "type": "TrafficPermission",
                "mesh": "default",
                "name": "all",
                "sources": [{"match": {"kuma.io/service": "*"}}],
                "destinations": [{"match": {"kuma.io/service": "*"}}],
            },
            "TrafficPermission",
        ),
        (
            "global",
            "/meshes/default/dataplanes/web-9",
            dataplane("web-9", "web", WEB_ADDRESS),
            "Dataplane",
        ),
        (
            "global",
            "/zoneingresses/in",
            {
                "type": "ZoneIngress",
                "name": "in",
                "networking": {"address": INGRESS_ADDRESS, "port": 1},
            },
            "ZoneIngress",
        ),
    ],
)
def test_writes_a_mode_does_not_take_answer_405_with_a_clear_message(
    deployment: dict[str, Any], server: str, path: str, body: dict[str, Any], refused: str
) -> None:
    api = deployment["servers"][server].api
    response = put(api, path, body)
    assert response.status_code == 405
    details = response.json()["details"]
    assert refused in details and "read-only" in details
    other = "global" if server != "global" else "zone"
    assert other in details
    # All or nothing through apply as well.
    applied = httpx.post(api + "/apply", json={"items": [body]}, timeout=10)
    assert applied.status_code == 405
    assert httpx.get(api + path).status_code == 404
