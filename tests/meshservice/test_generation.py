"""MeshServices generated from dataplanes, as Kuma generates them on Universal: per mesh
mode, their ports, labels and protocols, the names that cannot be one, the deletion grace
period, written MeshServices left alone, and passes that agree (or write nothing)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from registry.feed.follower import RegistryFollower
from registry.meshservice.generate import MeshServiceGenerator
from registry.snapshot import Delta
from registry.store import Store
from registry.store.database import create_engine
from tests.factories import dataplane, inbound, mesh
from tests.meshservice.meshtesting import loaded, mesh_service, put
from tests.serve_settings import vip_settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GENERATED = {
    "kuma.io/mesh": "default",
    "kuma.io/managed-by": "meshservice-generator",
    "kuma.io/env": "universal",
    "kuma.io/zone": "default",
    "kuma.io/origin": "zone",
}


async def stored(store: Store, name: str, mesh_name: str = "default") -> dict[str, Any] | None:
    """A MeshService as stored (its document), or None."""
    page = await store.list_resources("MeshService", mesh_name, size=1000)
    for item in page.items:
        if item.resource.name == name:
            return item.resource.dump()
    return None


async def names(store: Store, mesh_name: str = "default") -> list[str]:
    page = await store.list_resources("MeshService", mesh_name, size=1000)
    return sorted(item.resource.name for item in page.items)


@pytest.mark.parametrize("mode", ["Everywhere", "ReachableBackends", "Exclusive"])
async def test_a_mesh_that_generates_gets_a_mesh_service_per_service(store: Store, mode: str):
    await put(
        store,
        mesh(meshServices={"mode": mode}),
        dataplane(
            "redis-1", "10.0.0.1", inbounds=[inbound("redis", 6379), inbound("metrics", 9100)]
        ),
        dataplane("redis-2", "10.0.0.2", "redis", port=6379),
    )
    plan = await MeshServiceGenerator(store).generate(NOW)
    assert sorted(service.name for service in plan.puts) == ["metrics", "redis"]
    assert await stored(store, "redis") == {
        "type": "MeshService",
        "mesh": "default",
        "name": "redis",
        "labels": {**GENERATED, "kuma.io/display-name": "redis"},
        "spec": {
            "selector": {"dataplaneTags": {"kuma.io/service": "redis"}},
            "ports": [{"name": "6379", "port": 6379, "targetPort": 6379, "appProtocol": "tcp"}],
        },
    }
    # It has its VIP, and the view its hostname.
    await store.ensure_hostname_generators()
    redis = (await loaded(store)).snapshot.meshes["default"].destinations["MeshService/redis"]
    assert isinstance(redis.vip, IPv4Address) and redis.vip in IPv4Network("241.0.0.0/8")
    assert redis.hostnames == ("redis.svc.mesh.local",)
    assert [e.dataplane for e in redis.ports[0].endpoints] == ["redis-1", "redis-2"]


async def test_a_disabled_mesh_generates_none_and_deletes_the_generated(store: Store):
    await put(
        store,
        mesh(meshServices={"mode": "Everywhere"}),
        mesh("plain"),
        dataplane("web-1", "10.0.0.1", "web", port=80),
        dataplane("web-1", "10.0.0.1", "web", port=80, mesh="plain"),
        mesh_service("written", 80),
    )
    generator = MeshServiceGenerator(store)
    await generator.generate(NOW)
    assert await names(store) == ["web", "written"]
    assert await names(store, "plain") == []

    await put(store, mesh(meshServices={"mode": "Disabled"}))
    plan = await generator.generate(NOW)
    assert plan.deletes == (("default", "web"),)
    assert await names(store) == ["written"]


async def test_ports_names_and_protocols_come_from_the_inbounds(store: Store):
    """One port per distinct inbound port; the first inbound (older dataplane first) to use
    it names it (else its number) and gives its protocol, when Kuma knows it."""
    await put(
        store,
        mesh(meshServices={"mode": "Everywhere"}),
        dataplane(
            "api-1",
            "10.0.0.1",
            inbounds=[
                inbound("api", 8080, name="http", tags={"kuma.io/protocol": "http"}),
                inbound("api", 9090, tags={"kuma.io/protocol": "grpc"}),
            ],
        ),
    )
    await put(
        store,
        dataplane(
            "api-2",
            "10.0.0.2",
            inbounds=[
                inbound("api", 8080, name="other", tags={"kuma.io/protocol": "tcp"}),
                inbound("api", 7000, tags={"kuma.io/protocol": "mysql"}),
            ],
        ),
    )
    await MeshServiceGenerator(store).generate(NOW)
    document = await stored(store, "api")
    assert document is not None
    assert document["spec"]["ports"] == [
        {"name": "7000", "port": 7000, "targetPort": 7000, "appProtocol": "tcp"},
        {"name": "http", "port": 8080, "targetPort": 8080, "appProtocol": "http"},
        {"name": "9090", "port": 9090, "targetPort": 9090, "appProtocol": "grpc"},
    ]


async def test_labels_name_this_zone_and_other_labels_stay(store: Store):
    await put(
        store,
        mesh(meshServices={"mode": "Exclusive"}),
        dataplane("web-1", "10.0.0.1", "web", port=80),
    )
    generator = MeshServiceGenerator(store, zone="east")
    await generator.generate(NOW)
    document = await stored(store, "web")
    assert document is not None
    assert document["labels"] == {
        **GENERATED,
        "kuma.io/zone": "east",
        "kuma.io/display-name": "web",
    }
    # A label someone added stays when the service changes.
    document["labels"]["team"] = "shop"
    await put(store, document)
    await put(
        store, dataplane("web-1", "10.0.0.1", inbounds=[inbound("web", 80), inbound("web", 81)])
    )
    await generator.generate(NOW)
    document = await stored(store, "web")
    assert document is not None
    assert document["labels"]["team"] == "shop"
    assert [port["port"] for port in document["spec"]["ports"]] == [80, 81]


async def test_a_service_whose_name_is_no_dns_label_is_not_generated(
    store: Store, caplog: pytest.LogCaptureFixture
):
    await put(
        store,
        mesh(meshServices={"mode": "Everywhere"}),
        dataplane("web-1", "10.0.0.1", inbounds=[inbound("web_v1", 80), inbound("web", 81)]),
        dataplane("web-2", "10.0.0.2", "9lives", port=80),
    )
    generator = MeshServiceGenerator(store)
    with caplog.at_level(logging.WARNING, logger="meshdns.meshservice"):
        await generator.generate(NOW)
        await generator.generate(NOW)
    assert await names(store) == ["web"]
    reported = [r.getMessage() for r in caplog.records if "no MeshService" in r.getMessage()]
    assert len(reported) == 2  # each once
    assert any("'web_v1'" in message and "RFC 1035" in message for message in reported)


async def test_one_no_dataplane_serves_is_deleted_after_the_grace_period(store: Store):
    await put(
        store,
        mesh(meshServices={"mode": "Everywhere"}),
        dataplane("web-1", "10.0.0.1", "web", port=80),
    )
    generator = MeshServiceGenerator(store, grace_period=600)
    await generator.generate(NOW)
    await store.delete_dataplane("default", "web-1")

    await generator.generate(NOW)
    document = await stored(store, "web")
    assert document is not None
    assert document["labels"]["kuma.io/deletion-grace-period-started-at"] == "2026-06-01T12:00:00Z"
    assert not await generator.generate(NOW + timedelta(seconds=599))

    # Served again: the mark goes.
    await put(store, dataplane("web-1", "10.0.0.1", "web", port=80))
    await generator.generate(NOW + timedelta(seconds=599))
    document = await stored(store, "web")
    assert document is not None
    assert "kuma.io/deletion-grace-period-started-at" not in document["labels"]

    await store.delete_dataplane("default", "web-1")
    later = NOW + timedelta(seconds=1000)
    await generator.generate(later)
    assert await names(store) == ["web"]
    plan = await generator.generate(later + timedelta(seconds=600))
    assert plan.deletes == (("default", "web"),)
    assert await names(store) == []


async def test_written_mesh_services_are_never_touched(store: Store):
    written = mesh_service("redis", 7000, selector={"dataplaneTags": {"app": "redis"}})
    await put(
        store,
        mesh(meshServices={"mode": "Everywhere"}),
        written,
        mesh_service("orphan", 80),
        dataplane("redis-1", "10.0.0.1", "redis", port=6379),
    )
    generator = MeshServiceGenerator(store, grace_period=0)
    assert not await generator.generate(NOW)  # the name is taken: nothing to generate
    await generator.generate(NOW + timedelta(seconds=1))
    assert await names(store) == ["orphan", "redis"]
    document = await stored(store, "redis")
    assert document is not None and document["spec"]["ports"] == [{"port": 7000}]


async def test_dataplanes_of_other_zones_generate_nothing(store: Store):
    await put(
        store,
        mesh(meshServices={"mode": "Everywhere"}),
        dataplane("web-1", "10.0.0.1", "web", port=80, labels={"kuma.io/zone": "west"}),
    )
    assert not await MeshServiceGenerator(store).generate(NOW)


async def test_a_pass_with_nothing_to_do_writes_nothing(store: Store):
    await put(
        store,
        mesh(meshServices={"mode": "Everywhere"}),
        dataplane("web-1", "10.0.0.1", "web", port=80),
    )
    generator = MeshServiceGenerator(store)
    assert await generator.generate(NOW)
    revision = await store.revision()
    assert not await generator.generate(NOW)
    assert not await MeshServiceGenerator(store).generate(NOW)
    assert await store.revision() == revision


async def test_a_pass_after_a_delta_looks_at_the_services_it_touched_only(store: Store):
    await put(
        store,
        mesh(meshServices={"mode": "Everywhere"}),
        dataplane("web-1", "10.0.0.1", "web", port=80),
        dataplane("api-1", "10.0.0.2", "api", port=80),
    )
    generator = MeshServiceGenerator(store)
    plan = await generator.generate(NOW, only={("default", "web"), ("other", "api")})
    assert [service.name for service in plan.puts] == ["web"]
    assert await names(store) == ["web"]
    # The follower's deltas say which: those pass next; a mesh's change, everything.
    generator._everything = False  # as after the first pass
    generator.changed(Delta(services=frozenset({("default", "api")})))
    assert generator._services == {("default", "api")} and not generator._everything
    generator.changed(Delta(meshes=frozenset({"default"})))
    assert generator._everything


@pytest.mark.postgres
async def test_two_servers_on_one_database_do_not_fight(postgres_database_url: str):
    """Two generators (two `serve` processes) pass at once: one writes, the other finds
    it done; the services are written once."""
    engines = [create_engine(postgres_database_url) for _ in range(2)]
    stores = [Store(engine, vip_settings()) for engine in engines]
    try:
        await put(
            stores[0],
            mesh(meshServices={"mode": "Everywhere"}),
            *(dataplane(f"svc{n}-1", f"10.0.0.{n + 1}", f"svc{n}", port=80) for n in range(20)),
        )
        before = await stores[0].revision()
        plans = await asyncio.gather(
            *(MeshServiceGenerator(store).generate(NOW) for store in stores)
        )
        assert sorted(len(plan.puts) for plan in plans) == [0, 20]
        assert await stores[0].revision() == before + 20
        assert len(await names(stores[0])) == 20
    finally:
        for engine in engines:
            await engine.dispose()


async def test_the_generator_follows_the_feed_and_its_own_period(store: Store):
    """Started as `serve` starts it: woken by dataplane changes the follower applies, and
    deleting after the grace period by its own period."""
    await put(store, mesh(meshServices={"mode": "Everywhere"}))
    follower = RegistryFollower(store, lambda snapshot, delta: None, poll_interval=0.05)
    generator = MeshServiceGenerator(store, grace_period=0.5, period=0.1, min_interval=0.05)
    follower.on_change(("Dataplane", "Mesh"), generator.changed)
    await follower.load()
    follow = asyncio.create_task(follower.run())
    generator.start()
    try:
        await put(store, dataplane("web-1", "10.0.0.1", "web", port=80))
        await wait_for(lambda: names(store), ["web"])
        await store.delete_dataplane("default", "web-1")
        await wait_for(lambda: names(store), [])
    finally:
        await generator.stop()
        follow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follow


async def wait_for(read: Any, expected: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (found := await read()) != expected:
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.05)
