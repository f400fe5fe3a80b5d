"""Multi-zone end to end: one Postgres server, three databases (global, zone-a, zone-b),
three `meshdns serve` processes and two `meshdns sync` workers, all real, on loopback.

A `backend` dataplane and a zone ingress are registered in zone-a; a dataplane client in
zone-b (a `web` dataplane, querying from its own address) must not see `backend.mesh`
while the mesh has no mTLS, and must see it, through zone-a's ingress, once global
enables mTLS and a TrafficPermission allows it.

The deployment is started once for the module (one worker runs a module's tests, in
this order): each test leaves it as it found it, and whatever a test stopped is started
again before the next. Which writes each mode refuses is checked in process, over both
backends, with one check on the real processes that `serve --mode` wires the mode in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import httpx
import pytest

from registry.api.app import create_app
from registry.store import Store
from tests.conftest import PostgresAdmin, postgres_url
from tests.factories import dataplane
from tests.helpers import Meshdns, dig, eventually
from tests.multizone.conftest import SyncProcess

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


# Which writes each mode refuses: the server, the path, the body, the refused kind.
REFUSED_WRITES: list[tuple[str, str, dict[str, Any], str]] = [
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
        dataplane("web-9", WEB_ADDRESS, "web"),
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
]
# How each server of the deployment is set up (`serve --mode ... --zone ...`).
MODES = {"global": ("global", None), "zone-a": ("zone", "zone-a")}


def assert_refused(answer: httpx.Response, server: str, refused: str) -> None:
    """A 405 whose message names the kind refused, read-only, and where to write it."""
    assert answer.status_code == 405
    details = answer.json()["details"]
    assert refused in details and "read-only" in details
    other = "global" if server != "global" else "zone"
    assert other in details


def deployed(test: Callable[..., None]) -> Callable[..., None]:
    """The marks of a test on the real deployment."""
    return pytest.mark.postgres(pytest.mark.integration(test))


@dataclass
class Deployment:
    """The module's processes and their databases, by name."""

    urls: dict[str, str]
    servers: dict[str, Meshdns]
    workers: dict[str, SyncProcess]


@pytest.fixture(scope="module")
def shared_deployment(
    postgres_admin: PostgresAdmin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Global, zone-a and zone-b control planes on databases of their own, and the two
    zones' sync workers: started once for the module."""
    postgres_admin.require()
    cwd = tmp_path_factory.mktemp("multizone")
    names = {name: postgres_admin.create_migrated() for name in ("global", "zone-a", "zone-b")}
    urls = {name: postgres_url(database) for name, database in names.items()}
    servers: dict[str, Meshdns] = {}
    workers: dict[str, SyncProcess] = {}
    try:
        for name, extra in (
            ("global", ("--mode", "global")),
            ("zone-a", ("--mode", "zone", "--zone", "zone-a")),
            ("zone-b", ("--mode", "zone", "--zone", "zone-b")),
        ):
            servers[name] = Meshdns(database_url=urls[name], cwd=cwd, extra=extra)
            servers[name].start()
        for zone in ("zone-a", "zone-b"):
            workers[zone] = SyncProcess(zone, urls[zone], urls["global"], cwd).start()
        # The default mesh comes from global.
        for zone in ("zone-a", "zone-b"):

            def replicated(mesh: str = servers[zone].api + "/meshes/default") -> bool:
                return httpx.get(mesh).status_code == 200

            eventually(replicated, what=f"mesh default replicated to {zone}")
        yield Deployment(urls, servers, workers)
    finally:
        processes: list[SyncProcess | Meshdns] = [*workers.values(), *servers.values()]
        for process in processes:
            if process.process is not None:
                process.stop()
        for database in names.values():
            postgres_admin.drop(database)


@pytest.fixture
def deployment(shared_deployment: Deployment) -> Deployment:
    """The module's deployment, every process running: what an earlier test stopped
    (global and the sync workers, to show the zones answering without them) is started
    again, on the same ports and databases."""
    for server in shared_deployment.servers.values():
        if server.process is not None and server.process.poll() is not None:
            server.start()
    for worker in shared_deployment.workers.values():
        if worker.process is not None and worker.process.poll() is not None:
            worker.start()
    return shared_deployment


@deployed
def test_disabling_a_zone_removes_its_ingress_from_the_other_zones(
    deployment: Deployment,
) -> None:
    servers = deployment.servers
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
    # Leave the deployment as it was: no ingress anywhere.
    assert httpx.delete(zone_a.api + "/zoneingresses/ingress-1", timeout=10).status_code == 200
    eventually(lambda: ingress_names() == [], what="ingress deleted, gone from zone-b")


@deployed
def test_serve_in_each_mode_refuses_the_writes_of_the_other(deployment: Deployment) -> None:
    """`serve --mode` wires the mode into the API: one refused write of each server."""
    for server, path, body, refused in (REFUSED_WRITES[0], REFUSED_WRITES[2]):
        api = deployment.servers[server].api
        assert_refused(put(api, path, body), server, refused)
        applied = httpx.post(api + "/apply", json={"items": [body]}, timeout=10)
        assert applied.status_code == 405
        assert httpx.get(api + path).status_code == 404


@deployed
def test_backend_in_zone_a_is_reachable_from_zone_b_only_under_mtls_and_a_permission(
    deployment: Deployment,
) -> None:
    servers = deployment.servers
    zone_a, zone_b, global_cp = servers["zone-a"], servers["zone-b"], servers["global"]
    assert (
        put(
            zone_a.api,
            "/meshes/default/dataplanes/backend-1",
            dataplane("backend-1", BACKEND_ADDRESS, "backend"),
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
            zone_b.api, "/meshes/default/dataplanes/web-1", dataplane("web-1", WEB_ADDRESS, "web")
        ).status_code
        == 201
    )
    assert (
        put(
            zone_b.api, "/meshes/default/dataplanes/db-1", dataplane("db-1", OTHER_ADDRESS, "db")
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
    # (The deployment fixture starts them again for any test after this one.)
    for worker in deployment.workers.values():
        worker.kill()
    global_cp.stop()
    assert ask(zone_b, "backend.mesh", "A") == ("NOERROR", vips)
    assert ask(zone_b, "_backend._tcp.mesh", "SRV") == ("NOERROR", srv)


@pytest.mark.parametrize(("server", "path", "body", "refused"), REFUSED_WRITES)
async def test_writes_a_mode_does_not_take_answer_405_with_a_clear_message(
    store: Store, server: str, path: str, body: dict[str, Any], refused: str
) -> None:
    # As on the deployment, the mesh default exists.
    await Store(store.engine, store.vips, mode="standalone").ensure_mesh("default")
    mode, zone = MODES[server]
    app = create_app(Store(store.engine, store.vips, mode=mode), zone=zone)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
        assert_refused(await http.put(path, json=body), server, refused)
        # All or nothing through apply as well.
        applied = await http.post("/apply", json={"items": [body]})
        assert applied.status_code == 405
        assert (await http.get(path)).status_code == 404
