"""The console's page of a mesh's service model (MeshServices, MeshMultiZoneServices,
MeshExternalServices), in process over a real store and the registry view `serve`'s
follower builds from it: hostnames, VIPs, ports, generators' conditions, dataplanes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import httpx
import pytest

from meshdns.console import routes
from registry.feed.view import RegistryView
from registry.meshservice.generate import MeshServiceGenerator
from tests.console.conftest import Console, make_app
from tests.console.test_pages import text
from tests.factories import dataplane, inbound, mesh
from tests.meshservice.meshtesting import (
    external_service,
    generator,
    loaded,
    mesh_service,
    multizone_service,
    put,
)

PAGE = "/gui/meshes/default/meshservices"


@dataclass
class ModelConsole:
    """The console with its service model page, and the view it reads it from."""

    console: Console
    http: httpx.AsyncClient
    view: RegistryView

    async def follow(self) -> None:
        """Load the registry as serve's follower does: the view, and its snapshot."""
        self.view = await loaded(self.console.store)
        self.console.snapshot = self.view.snapshot

    async def page(self, path: str = PAGE, status: int = 200) -> str:
        answer = await self.http.get(path)
        assert answer.status_code == status, answer.text
        return answer.text


@pytest.fixture
async def model(console: Console) -> AsyncIterator[ModelConsole]:
    shown = ModelConsole(console, console.http, await loaded(console.store))
    app = make_app(console, service_model=lambda: shown.view)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://meshdns") as http:
        shown.http = http
        yield shown


async def test_a_generated_mesh_service_shows_its_hostname_vip_port_and_condition(model):
    store = model.console.store
    await put(
        store,
        mesh(meshServices={"mode": "Everywhere"}),
        dataplane("redis-1", "10.0.0.1", inbounds=[inbound("redis", 6379)]),
    )
    await MeshServiceGenerator(store).generate()
    await store.ensure_hostname_generators()
    await model.follow()

    shown = text(await model.page())
    assert "1 MeshService; 0 MeshMultiZoneServices; 0 MeshExternalServices." in shown
    assert "meshServices.mode is Everywhere" in shown
    found = re.search(
        r"redis redis\.svc\.mesh\.local (\S+) 6379/tcp → 6379 "
        r"local-universal-mesh-service: Generated: True 1 of 1",
        shown,
    )
    assert found, shown
    assert IPv4Address(found[1]) in IPv4Network("241.0.0.0/8")
    # The mesh's page links it.
    assert f'href="{PAGE}"' in await model.page("/gui/meshes/default")


async def test_collisions_and_template_errors_show_with_their_message(model):
    await put(
        model.console.store,
        mesh_service("shop-a", 8080, labels={"app": "shop"}),
        mesh_service(
            "shop-b", {"name": "http", "port": 80, "targetPort": 8080}, labels={"app": "shop"}
        ),
        mesh_service("untagged", 9000),
        generator("by-app", '{{ label "app" }}.apps.local'),
    )
    await model.follow()

    shown = text(await model.page())
    # shop-a, written first, keeps the hostname; shop-b collides; a missing label errs.
    assert "shop-a shop.apps.local" in shown
    assert "by-app: Generated: True" in shown
    assert re.search(
        r"shop-b none \S+ http 80/tcp → 8080 "
        r"by-app: Collision: Hostname collision with MeshService: shop-b",
        shown,
    ), shown
    assert re.search(
        r"untagged none \S+ 9000/tcp → 9000 by-app: TemplateError: pre evaluation of template "
        r'with parameters failed with error="label app not found"',
        shown,
    ), shown
    # Written through the API, they show whatever the mesh's mode.
    assert "meshServices.mode is Disabled" in shown


async def test_external_and_multizone_services_show_what_their_kind_has(model):
    store = model.console.store
    await put(
        store,
        mesh_service("redis", 6379, labels={"kuma.io/display-name": "redis"}),
        multizone_service("redis-all", {"kuma.io/display-name": "redis"}, 6379),
        external_service("httpbin", 443, ("192.0.2.80", 443)),
    )
    await store.ensure_hostname_generators()
    await model.follow()

    shown = text(await model.page())
    assert "1 MeshService; 1 MeshMultiZoneService; 1 MeshExternalService." in shown
    assert re.search(
        r"redis-all none \S+ 6379/tcp no generator selects it redis \(default\)", shown
    )
    assert re.search(
        r"httpbin httpbin\.extsvc\.mesh\.local \S+ 443/tcp "
        r"local-mesh-external-service: Generated: True 192\.0\.2\.80:443",
        shown,
    ), shown
    # A MeshService selecting no dataplane: none of none healthy.
    assert re.search(
        r"redis redis\.svc\.mesh\.local \S+ 6379/tcp → 6379 \S+ Generated: True 0 of 0", shown
    )


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("Disabled", "only when its meshServices.mode is not Disabled"),
        (
            "Everywhere",
            "is generated for each kuma.io/service of the mesh's dataplanes: it has none yet",
        ),
    ],
)
async def test_a_mesh_without_any_says_so_and_why(model, mode, why):
    await put(model.console.store, mesh(meshServices={"mode": mode}))
    await model.follow()
    page = await model.page()
    shown = text(page)
    assert "None in this mesh." in shown and why in shown
    assert f"meshServices.mode is {mode}" in shown
    assert "<table" not in page


async def test_long_listings_page(model, monkeypatch):
    monkeypatch.setattr(routes, "DESTINATIONS_PER_PAGE", 2)
    await put(model.console.store, *(mesh_service(name, 80) for name in ("a", "b", "c")))
    await model.follow()
    first, second = text(await model.page()), text(await model.page(PAGE + "?page=2"))
    assert (
        "MeshServices of mesh default (3)" in first and "MeshServices of mesh default (3)" in second
    )
    assert re.search(r"\ba none .* b none", first) and " c none" not in first
    assert " c none" in second and "a none" not in second
    assert "Page 2 of 2" in second


async def test_an_unknown_mesh_is_not_found(model):
    assert 'There is no mesh "nope"' in text(await model.page("/gui/meshes/nope/meshservices", 404))


async def test_a_console_without_the_view_has_no_such_page(console):
    assert "There is no service model page" in text(await console.page(PAGE, 404))
    assert "meshservices" not in await console.page("/gui/meshes/default")
