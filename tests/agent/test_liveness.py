"""Liveness in the registry: transitions are feed changes, heartbeats are not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from registry.agents.liveness import Liveness
from registry.errors import NotFound
from registry.schema import Mesh
from registry.store import Store
from tests.factories import dataplane_resource
from tests.serve_settings import liveness_settings, vip_settings

SETTINGS = liveness_settings(
    heartbeat_interval=1.0, offline_after=3, agent_cleanup_delay=10.0, offline_gc_age=100.0
)


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def endpoints(store: Store, service: str = "web") -> dict[str, bool]:
    """Each endpoint's dataplane and whether it is online, as snapshots see it."""
    snapshot = await store.load_snapshot()
    view = snapshot.meshes["default"].services.get(service)
    return {} if view is None else {e.dataplane: e.online for e in view.endpoints}


@pytest.fixture
async def liveness(store: Store) -> Liveness:
    await store.put(Mesh.model_validate({"name": "default"}))
    return Liveness(store, SETTINGS)


async def test_connect_marks_online_and_sweep_marks_offline_then_deletes(store, liveness):
    assert (
        await liveness.connect(dataplane_resource("web-1", "10.0.0.1", "web", ready=True)) is True
    )
    assert await endpoints(store) == {"web-1": True}
    assert (await liveness.sweep(later(2))).offline == ()

    result = await liveness.sweep(later(3.5))
    assert result.offline == (("default", "web-1"),)
    assert await endpoints(store) == {"web-1": False}
    snapshot = await store.load_snapshot()
    service = snapshot.meshes["default"].services["web"]
    assert service.vip is not None and service.ready_endpoints == ()
    insight = (await liveness.insights("default", ["web-1"]))["web-1"]
    assert insight.online is False and insight.origin == "agent"
    assert insight.disconnected_at is not None

    # Not yet past the clean-up delay (10 s after it went offline), then past it.
    assert (await liveness.sweep(later(8))).deleted == ()
    assert (await liveness.sweep(later(12))).deleted == (("default", "web-1"),)
    assert await endpoints(store) == {}
    with pytest.raises(NotFound):
        await store.get_dataplane("default", "web-1")


async def test_heartbeats_are_batched_and_no_feed_change(store, liveness):
    await liveness.connect(dataplane_resource("web-1", "10.0.0.1", "web", ready=True))
    revision = await store.revision()
    for _ in range(50):
        await liveness.heartbeat(("default", "web-1"))
    assert await liveness.flush() == 1
    assert await store.revision() == revision
    # The flushed time keeps it online past the window counted from the connect.
    insight = (await liveness.insights("default", ["web-1"]))["web-1"]
    assert (await liveness.sweep(insight.last_seen + timedelta(seconds=2.5))).offline == ()


async def test_heartbeat_brings_an_offline_dataplane_back(store, liveness):
    await liveness.connect(dataplane_resource("web-1", "10.0.0.1", "web", ready=True))
    await liveness.sweep(later(4))
    assert await endpoints(store) == {"web-1": False}
    revision = await store.revision()
    await liveness.heartbeat(("default", "web-1"))
    await liveness.flush()
    assert await endpoints(store) == {"web-1": True}
    assert await store.revision() == revision + 1


async def test_heartbeat_for_an_unknown_dataplane_is_not_found(liveness):
    with pytest.raises(NotFound):
        await liveness.heartbeat(("default", "nobody"))


async def test_api_dataplane_is_kept_offline_until_the_gc_age(store, liveness):
    await store.put(dataplane_resource("db-1", "10.0.0.2", "db", ready=True))
    # Never connected by an agent: a static registration, always an endpoint.
    assert await endpoints(store, "db") == {"db-1": True}
    assert await liveness.connect(dataplane_resource("db-1", "10.0.0.2", "db", ready=True)) is False
    await liveness.sweep(later(4))
    assert (await liveness.sweep(later(50))).deleted == ()
    assert await endpoints(store, "db") == {"db-1": False}
    assert (await liveness.sweep(later(110))).deleted == (("default", "db-1"),)


async def test_disconnect_deletes_agent_dataplanes_and_keeps_api_ones(store, liveness):
    await liveness.connect(dataplane_resource("web-1", "10.0.0.1", "web", ready=True))
    await store.put(dataplane_resource("db-1", "10.0.0.2", "db", ready=True))
    await liveness.connect(dataplane_resource("db-1", "10.0.0.2", "db", ready=True))
    assert await liveness.disconnect(("default", "web-1")) is True
    assert await liveness.disconnect(("default", "db-1")) is False
    assert await endpoints(store) == {}
    assert await endpoints(store, "db") == {"db-1": False}


async def test_not_ready_inbound_is_no_endpoint_but_keeps_the_vip(store, liveness):
    await liveness.connect(dataplane_resource("web-1", "10.0.0.1", "web", ready=False))
    snapshot = await store.load_snapshot()
    service = snapshot.meshes["default"].services["web"]
    assert service.vip is not None and service.ready_endpoints == ()
    assert (await store.list_services("default"))[0].endpoints == 0


@pytest.mark.postgres
async def test_replicas_sweeping_at_once_flip_each_dataplane_once(postgres_database_url):
    from registry.store.database import create_engine

    engines = [create_engine(postgres_database_url) for _ in range(4)]
    try:
        stores = [Store(engine, vip_settings()) for engine in engines]
        await stores[0].put(Mesh.model_validate({"name": "default"}))
        replicas = [Liveness(store, SETTINGS) for store in stores]
        for n in range(20):
            await replicas[n % 4].connect(
                dataplane_resource(f"web-{n}", f"10.0.1.{n}", "web", ready=True)
            )
        revision = await stores[0].revision()
        results = await asyncio.gather(*(replica.sweep(later(4)) for replica in replicas))
        flipped = [key for result in results for key in result.offline]
        assert sorted(flipped) == sorted(("default", f"web-{n}") for n in range(20))
        assert await stores[0].revision() == revision + 20
    finally:
        for engine in engines:
            await engine.dispose()
