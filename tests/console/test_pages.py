"""The console's pages, in process over a real store: what each shows, with no JavaScript."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request

from meshdns.console import console_router
from registry.schema import Mesh, Zone, ZoneIngress
from registry.store import Store
from tests.console.conftest import Console, dataplane, make_app


def text(page: str) -> str:
    """The page's text without tags or runs of white space, for plain assertions."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def vip(console: Console, service: str, mesh: str = "default") -> str:
    return str(console.snapshot.meshes[mesh].services[service].vip)


async def register(console: Console, *dataplanes) -> None:
    for item in dataplanes:
        await console.store.put(item)
    await console.follow()


async def test_mesh_page_lists_services_with_vips_endpoints_and_dig_answers(console):
    await register(
        console,
        dataplane("backend-1", "10.0.0.1", "backend"),
        dataplane("backend-2", "10.0.0.2", "backend", ready=False),
        dataplane("web-1", "10.0.0.3", "web", port=8000),
    )
    page = await console.page("/gui/meshes/default")
    shown = text(page)
    backend, web = vip(console, "backend"), vip(console, "web")
    assert f"backend {backend} local: 1 of 2 backend.mesh. 30 IN A {backend}" in shown
    assert f"web {web} local: 1 web.mesh. 30 IN A {web}" in shown
    assert 'href="/gui/meshes/default/services/backend"' in page


async def test_service_page_lists_dataplanes_with_address_port_tags_readiness_and_status(console):
    await register(
        console,
        dataplane("backend-1", "10.0.0.1", "backend", tags={"version": "v1"}),
        dataplane("backend-2", "10.0.0.2", "backend", port=9090, ready=False),
        dataplane("web-1", "10.0.0.3", "web"),
    )
    await console.liveness.connect(dataplane("backend-3", "10.0.0.4", "backend"))
    await console.liveness.connect(dataplane("backend-4", "10.0.0.5", "backend"))
    # Both miss their heartbeats; then backend-3's agent is heard from again.
    await console.liveness.sweep(datetime.now(UTC) + timedelta(seconds=20))
    await console.liveness.heartbeat(("default", "backend-3"))
    await console.liveness.flush()
    await console.follow()

    shown = text(await console.page("/gui/meshes/default/services/backend"))
    assert "Dataplanes of service backend (4)" in shown
    assert "backend-1 10.0.0.1 8080 kuma.io/service=backend version=v1 yes Static no agent" in shown
    assert "backend-2 10.0.0.2 9090 kuma.io/service=backend no Static" in shown
    assert re.search(r"backend-3 10\.0\.0\.4 8080 \S+ yes Online \d+ s ago", shown)
    assert re.search(r"backend-4 10\.0\.0\.5 8080 \S+ yes Offline \d+ s ago", shown)
    assert "web-1" not in shown
    assert f"VIP {vip(console, 'backend')}" in shown


async def test_overview_counts_services_and_dataplanes_online_and_offline(console):
    await console.store.put(
        Mesh.model_validate({"name": "payments", "mtls": {"enabledBackend": "ca"}})
    )
    await register(
        console,
        dataplane("backend-1", "10.0.0.1", "backend"),
        dataplane("idle-1", "10.0.0.2", "idle", ready=False),
        dataplane("pay-1", "10.0.1.1", "pay", mesh="payments"),
    )
    await console.liveness.connect(dataplane("web-1", "10.0.0.3", "web"))
    await console.liveness.sweep(datetime.now(UTC) + timedelta(seconds=20))
    await console.follow()

    page = await console.page("/gui")
    shown = text(page)
    assert "Meshes 2" in shown
    # default: backend online; idle (not ready) and web (its one dataplane offline) not.
    assert "Services 2 online, 2 offline" in shown
    assert "Dataplanes 3 online, 1 offline" in shown
    assert "default off 1 2 2 1 0" in shown
    assert "payments on 1 0 1 0 0" in shown
    # Standalone: no zones; and no DNS rate without a source for it.
    assert "Zones" not in shown and "DNS queries" not in shown


async def test_dns_rate_shows_when_a_source_gives_one(console):
    app = make_app(console, dns_rate=lambda: 1234.5)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
        assert "DNS queries 1234.5 per second" in text((await http.get("/gui")).text)


async def test_search_finds_services_by_name_part_and_by_address(console):
    await register(
        console,
        dataplane("backend-1", "10.0.0.1", "backend"),
        dataplane("web-1", "10.0.0.3", "web"),
    )
    by_name = text(await console.page("/gui/search?q=ACK"))
    assert "Services matching “ACK” (1)" in by_name and "backend default" in by_name
    by_endpoint = text(await console.page("/gui/search?q=10.0.0.3"))
    assert "web default" in by_endpoint and "backend default" not in by_endpoint
    by_vip = text(await console.page(f"/gui/search?q={vip(console, 'backend')}"))
    assert "backend default" in by_vip
    assert "Nothing matches" in text(await console.page("/gui/search?q=nope"))


async def test_unknown_mesh_and_service_are_not_found_pages(console):
    assert "There is no mesh" in text(await console.page("/gui/meshes/nope", 404))
    missing = await console.page("/gui/meshes/default/services/nope", 404)
    assert 'There is no service "nope" in mesh "default"' in text(missing)
    assert "There is no zones" in text(await console.page("/gui/zones", 404))


async def test_names_are_escaped_and_linked_quoted(console):
    await register(console, dataplane("odd-1", "10.0.0.9", "a/b:c"))
    page = await console.page("/gui/meshes/default")
    assert 'href="/gui/meshes/default/services/a/b%3Ac"' in page
    assert "Service a/b:c" in text(await console.page("/gui/meshes/default/services/a/b%3Ac"))


async def test_version_is_the_snapshot_revision(console):
    before = (await console.http.get("/gui/api/version")).json()["revision"]
    await register(console, dataplane("web-1", "10.0.0.3", "web"))
    after = (await console.http.get("/gui/api/version")).json()["revision"]
    assert after > before
    assert after == console.snapshot.revision


async def test_pages_are_accessible_without_javascript(console):
    await register(console, dataplane("web-1", "10.0.0.3", "web"))
    listings = {
        "/gui": "default",
        "/gui/meshes/default": "web",
        "/gui/meshes/default/services/web": "web-1",
        "/gui/search?q=web": "web",
    }
    for path, listed in listings.items():
        page = await console.page(path)
        assert '<html lang="en">' in page
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
        assert '<a class="skip" href="#main">Skip to content</a>' in page
        assert '<main id="main"' in page
        assert '<label for="q">' in page and '<input id="q" name="q"' in page
        assert "<caption>" in page and '<th scope="col">' in page
        # The listing is in the HTML as served: the script only keeps it fresh.
        assert listed in text(page.split("<main", 1)[1])
    assert "max-width: 40rem" in (await console.http.get("/gui/static/console.css")).text
    script = await console.http.get("/gui/static/console.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert (await console.http.get("/gui/static/nope.js")).status_code == 404


async def test_zones_page_on_global_shows_status_last_contact_and_replication(console):
    app = make_app(console, mode="global")
    on_global = Store(console.store.engine, console.store.vips, mode="global")
    await on_global.put(Zone.model_validate({"name": "zone-a"}))
    await on_global.put(Zone.model_validate({"name": "zone-b"}))
    await on_global.put(Zone.model_validate({"name": "zone-c", "enabled": False}))
    await on_global.touch_zone("zone-a", datetime.now(UTC))
    await console.follow()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
        shown = text((await http.get("/gui/zones")).text)
        overview = text((await http.get("/gui")).text)
    assert re.search(r"zone-a Online \d+ s ago revision 0", shown)
    assert "zone-b Offline never revision 0" in shown
    assert "zone-c Disabled never" in shown
    assert "Zones 1 online, 2 offline" in overview


async def test_zones_page_on_a_zone_shows_itself(console):
    app = make_app(console, mode="zone", zone="zone-a")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
        assert "zone-a Local revision 0" in text((await http.get("/gui/zones")).text)


async def test_dependencies_guard_every_route(console):
    def deny(request: Request) -> None:
        if request.headers.get("authorization") != "Bearer ok":
            raise HTTPException(401)

    app = FastAPI()
    app.include_router(
        console_router(
            console.store,
            lambda: console.snapshot,
            insights=console.liveness.insights,
            dependencies=[Depends(deny)],
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
        for path in ("/gui", "/gui/api/version", "/gui/static/console.css", "/gui/zones"):
            assert (await http.get(path)).status_code == 401
        assert (await http.get("/gui", headers={"authorization": "Bearer ok"})).status_code == 200
        assert (await http.post("/gui")).status_code == 405  # read-only


async def test_services_other_zones_offer_show_their_zone_and_ingress(console):
    await register(
        console,
        dataplane("backend-1", "10.0.0.1", "backend"),
        ZoneIngress.model_validate(
            {
                "name": "zone-b.ingress-1",
                "zone": "zone-b",
                "networking": {"address": "192.0.2.10", "port": 10001},
                "availableServices": [
                    {"tags": {"kuma.io/service": "billing"}, "instances": 2, "mesh": "default"},
                    {"tags": {"kuma.io/service": "backend"}, "instances": 1, "mesh": "default"},
                ],
            }
        ),
    )
    shown = text(await console.page("/gui/meshes/default"))
    backend, billing = vip(console, "backend"), remote_vip(console, "billing")
    assert f"backend {backend} local: 1 zone-b (remote): 1 backend.mesh. 30 IN A {backend}" in shown
    # Who sees a remote-only service is decided per client: no one answer to show.
    assert f"billing {billing} zone-b (remote): 1 per client (cross-zone)" in shown
    page = text(await console.page("/gui/meshes/default/services/billing"))
    assert "Dataplanes of service billing (0)" in page
    assert "zone-b zone-b.ingress-1 192.0.2.10 10001" in page


def remote_vip(console: Console, service: str) -> str:
    return str(console.snapshot.meshes["default"].remote[service].vip)
