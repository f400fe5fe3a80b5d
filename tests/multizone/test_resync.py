"""A sync worker stopped for longer than the change log's window: the source's log no
longer says what changed, so the worker replicates whole, both ways, and the registries
end equal (the convergence test's comparison), deletions included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from registry.feed.compaction import Window, compact
from registry.schema import parse_resource
from registry.write_rules import GLOBAL
from tests.conftest import BACKENDS
from tests.factories import dataplane, traffic_permission, zone_ingress
from tests.meshservice.meshtesting import external_service
from tests.multizone.test_convergence import zone_rows
from tests.multizone.test_service_sync import Deployment, deployed


@pytest.fixture(params=BACKENDS)
async def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(request.param, request, tmp_path) as made:
        yield made


async def names(deployment: Deployment, where: str, kind: str) -> set[str]:
    return set(await deployment.documents(where, kind))


async def test_a_worker_behind_the_window_resyncs_and_ends_equal(deployment: Deployment):
    zone, on_global = deployment.stores["zone-a"], deployment.stores[GLOBAL]
    for index in range(12):
        await zone.put(parse_resource(dataplane(f"web-{index}", f"10.0.0.{index + 1}")))
    await deployment.put("zone-a", zone_ingress("ingress-1", None, address="127.0.0.12"))
    await deployment.put("zone-a", external_service("old-db", 5432, ("10.5.0.1", 5432)))
    await deployment.put(GLOBAL, traffic_permission("old", ["web"], ["db"]))
    await deployment.sync()
    assert await zone_rows(on_global, "zone-a") == await zone_rows(zone, None)
    assert "old" in await names(deployment, "zone-a", "TrafficPermission")

    # The worker is stopped; both sides change, then compact their logs past its cursor.
    for index in range(0, 12, 3):
        await zone.delete_dataplane("default", f"web-{index}")
    for index in range(12, 20):
        await zone.put(parse_resource(dataplane(f"web-{index}", f"10.0.1.{index}")))
    await zone.put(parse_resource(dataplane("web-1", "10.0.9.1")))  # moved
    await deployment.delete("zone-a", "MeshExternalService", "default", "old-db")
    await deployment.put("zone-a", external_service("new-db", 5432, ("10.5.0.2", 5432)))
    await deployment.delete(GLOBAL, "TrafficPermission", "default", "old")
    await deployment.put(GLOBAL, traffic_permission("new", ["web"], ["db"]))
    for store in (zone, on_global):
        assert await compact(store, Window(revisions=1), datetime.now(UTC)) > 0

    worker = deployment.worker("zone-a")
    await worker.sync_once()
    await worker.sync_once()  # the sweep the resync called for
    assert worker.resyncs == {"push": 1, "pull": 1}
    assert await zone_rows(on_global, "zone-a") == await zone_rows(zone, None)
    permissions = await names(deployment, "zone-a", "TrafficPermission")
    assert "new" in permissions and "old" not in permissions
    external = {
        document["labels"]["kuma.io/display-name"]
        for document in (await deployment.documents(GLOBAL, "MeshExternalService")).values()
        if document["labels"].get("kuma.io/zone") == "zone-a"
    }
    assert external == {"new-db"}
    # Caught up again: the next round follows the log, no resync.
    await zone.put(parse_resource(dataplane("web-99", "10.0.2.1")))
    await worker.sync_once()
    assert worker.resyncs == {"push": 1, "pull": 1}
    assert await zone_rows(on_global, "zone-a") == await zone_rows(zone, None)
