"""The sync of Kuma's service model, in process, on both backends: global and two zones,
each a store of its own, and each zone's SyncWorker run until caught up.

zone -> global: a zone's own MeshServices and MeshExternalServices, renamed with Kuma's
hashed name and labelled with their zone; global -> zones: the other zones' MeshServices
and what was created on global. A zone never receives its own back; deletions follow;
a worker stopped anywhere and started again converges.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from registry.meshservice.naming import hashed_name
from registry.schema import parse_resource
from registry.store import Store
from registry.store.database import create_engine
from registry.sync import SyncSettings, SyncWorker, read_cursor, zone_source
from registry.sync.copies import read_documents
from registry.sync.service_model import GlobalToZoneKinds, ZoneToGlobalKinds
from registry.write_rules import GLOBAL, ZONE, Origin
from tests.conftest import BACKENDS, PostgresAdmin, postgres_url
from tests.factories import mesh
from tests.meshservice.meshtesting import external_service, generator, multizone_service
from tests.meshservice.meshtesting import mesh_service as local_mesh_service
from tests.serve_settings import vip_settings

MESH_SERVICES = IPv4Network("241.0.0.0/8")
MULTIZONE_SERVICES = IPv4Network("243.0.0.0/8")
ZONES = ("zone-a", "zone-b")


def mesh_service(name: str, zone: str, **fields: Any) -> dict[str, Any]:
    """A MeshService as zone `zone`'s API labels one written to it."""
    labels = {"kuma.io/zone": zone, **fields.pop("labels", {})}
    return local_mesh_service(name, 6379, labels=labels, **fields)


def on_global(document: dict[str, Any]) -> dict[str, Any]:
    """`document` as global's API labels it: kuma.io/mesh only."""
    labels = {"kuma.io/mesh": document["mesh"]} if "mesh" in document else {}
    return {**document, "labels": {**labels, **document.get("extra_labels", {})}}


def permission(name: str) -> dict[str, Any]:
    return {
        "type": "MeshTrafficPermission",
        "mesh": "default",
        "name": name,
        "labels": {"kuma.io/mesh": "default"},
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "redis"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
        },
    }


@dataclass
class Deployment:
    stores: dict[str, Store]
    batch: int = 1000

    def worker(self, zone: str) -> SyncWorker:
        settings = SyncSettings(batch=self.batch, poll_interval=0.1, progress=False)
        return SyncWorker(zone, self.stores[zone], self.stores[GLOBAL], settings)

    async def sync(self, rounds: int = 2) -> None:
        """Each zone's worker (a fresh one: as after a start) until all are caught up:
        twice, so what one zone sent reaches the other."""
        for _ in range(rounds):
            for zone in ZONES:
                worker = self.worker(zone)
                await worker.sync_once()
                # A sweep a batch found due runs at the next round of the same worker.
                await worker.sync_once()

    async def put(self, where: str, *documents: dict[str, Any]) -> None:
        store = self.stores[where]
        async with store.writing() as transaction:
            for document in documents:
                await store.put_in(transaction, parse_resource(document))

    async def delete(self, where: str, kind: str, mesh: str, name: str) -> None:
        await self.stores[where].delete_resource(kind, mesh, name)

    async def documents(self, where: str, kind: str) -> dict[str, dict[str, Any]]:
        async with self.stores[where].reading() as connection:
            found = await read_documents(connection, kind, None)
        return {name: document for (_, name), document in found.items()}


@contextlib.asynccontextmanager
async def deployed(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Deployment]:
    """Global, zone-a and zone-b stores on databases of their own, each with its default
    HostnameGenerators (as `serve` makes them), with mesh default (Exclusive) on global."""
    urls: dict[str, str] = {}
    dropped: list[Callable[[], None]] = []
    for name in (GLOBAL, *ZONES):
        if backend == "sqlite":
            path = tmp_path / f"{name}.db"
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
            urls[name] = f"sqlite+aiosqlite:///{path}"
        else:
            admin: PostgresAdmin = request.getfixturevalue("postgres_admin")
            admin.require()
            database = admin.create_migrated()
            urls[name] = postgres_url(database)
            dropped.append(lambda admin=admin, database=database: admin.drop(database))
    engines = {name: create_engine(url) for name, url in urls.items()}
    stores = {
        name: Store(engine, vip_settings(), mode=GLOBAL if name == GLOBAL else ZONE)
        for name, engine in engines.items()
    }
    try:
        for store in stores.values():
            await store.ensure_hostname_generators()
        await stores[GLOBAL].put(parse_resource(mesh(meshServices={"mode": "Exclusive"})))
        deployment = Deployment(stores)
        await deployment.sync()
        yield deployment
    finally:
        for engine in engines.values():
            await engine.dispose()
        for drop in dropped:
            drop()


@pytest.fixture(params=BACKENDS)
async def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(request.param, request, tmp_path) as made:
        yield made


@pytest.fixture
async def postgres_deployment(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Deployment]:
    """On Postgres only: a cancelled SQLite write leaves its lock to time out."""
    async with deployed("postgres", request, tmp_path) as made:
        yield made


async def test_a_zones_mesh_service_reaches_global_and_the_other_zone_only(
    deployment: Deployment,
):
    await deployment.put(
        "zone-a",
        mesh_service(
            "redis",
            "zone-a",
            labels={"kuma.io/deletion-grace-period-started-at": "2024-01-01T00:00:00Z"},
        ),
    )
    await deployment.sync()
    name = hashed_name("default", "redis", "zone-a")
    on_global_ = await deployment.documents(GLOBAL, "MeshService")
    assert list(on_global_) == [name]
    labels = on_global_[name]["labels"]
    assert labels["kuma.io/origin"] == "zone" and labels["kuma.io/zone"] == "zone-a"
    assert labels["kuma.io/display-name"] == "redis"
    assert "kuma.io/deletion-grace-period-started-at" not in labels
    assert on_global_[name]["spec"]["selector"] == {"dataplaneTags": {"kuma.io/service": "redis"}}

    in_b = await deployment.documents("zone-b", "MeshService")
    assert list(in_b) == [name]  # one name everywhere
    assert in_b[name]["labels"]["kuma.io/origin"] == "global"
    assert in_b[name]["labels"]["kuma.io/zone"] == "zone-a"
    # Never back to its zone.
    assert list(await deployment.documents("zone-a", "MeshService")) == ["redis"]
    # Zone-b gives it a VIP of its own; global none.
    snapshot = await deployment.stores["zone-b"].load_snapshot()
    copy = snapshot.meshes["default"].destinations[f"MeshService/{name}"]
    assert copy.vip in MESH_SERVICES and copy.zone == "zone-a" and copy.service == "redis"
    global_copy = (await deployment.stores[GLOBAL].load_snapshot()).meshes["default"]
    assert global_copy.destinations[f"MeshService/{name}"].vip is None

    # A change follows; the deletion too, everywhere.
    changed = mesh_service("redis", "zone-a")
    changed["spec"]["ports"] = [{"port": 6380}]
    await deployment.put("zone-a", changed)
    await deployment.sync()
    in_b = await deployment.documents("zone-b", "MeshService")
    assert in_b[name]["spec"]["ports"] == [{"port": 6380}]
    await deployment.delete("zone-a", "MeshService", "default", "redis")
    await deployment.sync()
    assert await deployment.documents(GLOBAL, "MeshService") == {}
    assert await deployment.documents("zone-b", "MeshService") == {}


async def test_what_global_creates_reaches_every_zone_hash_renamed(deployment: Deployment):
    await deployment.put(
        GLOBAL,
        on_global(external_service("db", 5432, ("192.0.2.1", 5432))),
        on_global(multizone_service("redis", {"kuma.io/display-name": "redis"}, 6379)),
        permission("allow-redis"),
        generator("custom", "{{ .DisplayName }}.custom.mesh.local", match={"a": "b"}),
    )
    await deployment.sync()
    expected = {
        "MeshExternalService": hashed_name("default", "db", max_length=63),
        "MeshMultiZoneService": hashed_name("default", "redis", max_length=63),
        "MeshTrafficPermission": hashed_name("default", "allow-redis"),
    }
    for zone in ZONES:
        for kind, name in expected.items():
            copies = await deployment.documents(zone, kind)
            assert list(copies) == [name], (zone, kind)
            assert copies[name]["labels"]["kuma.io/origin"] == "global"
            assert copies[name]["labels"]["kuma.io/display-name"] in ("db", "redis", "allow-redis")
        generators = await deployment.documents(zone, "HostnameGenerator")
        assert hashed_name("", "custom") in generators
        # Global's defaults too (its synced-* generators), beside the zone's own.
        assert {
            hashed_name("", "synced-universal-mesh-service"),
            hashed_name("", "synced-mesh-multi-zone-service"),
            hashed_name("", "synced-mesh-external-service"),
            "local-universal-mesh-service",
            "local-mesh-external-service",
        } < generators.keys()
        snapshot = await deployment.stores[zone].load_snapshot()
        multizone = snapshot.meshes["default"].destinations[
            f"MeshMultiZoneService/{expected['MeshMultiZoneService']}"
        ]
        assert multizone.vip in MULTIZONE_SERVICES
    # A zone's MeshExternalService goes to global only.
    await deployment.put(
        "zone-a",
        external_service("api", 443, ("192.0.2.2", 443), labels={"kuma.io/zone": "zone-a"}),
    )
    await deployment.sync()
    api = hashed_name("default", "api", "zone-a", max_length=63)
    assert api in await deployment.documents(GLOBAL, "MeshExternalService")
    assert api not in await deployment.documents("zone-b", "MeshExternalService")
    assert "api" in await deployment.documents("zone-a", "MeshExternalService")

    for kind, name in (
        ("MeshExternalService", "db"),
        ("MeshMultiZoneService", "redis"),
        ("MeshTrafficPermission", "allow-redis"),
    ):
        await deployment.delete(GLOBAL, kind, "default", name)
    await deployment.delete(GLOBAL, "HostnameGenerator", "", "custom")
    await deployment.sync()
    for zone in ZONES:
        for kind in expected:
            assert set(await deployment.documents(zone, kind)) <= {"api"}, (zone, kind)
        assert hashed_name("", "custom") not in await deployment.documents(
            zone, "HostnameGenerator"
        )


async def test_a_display_name_other_than_the_name_is_followed_by_a_sweep(
    deployment: Deployment,
):
    await deployment.put(
        "zone-a", mesh_service("cache-v2", "zone-a", labels={"kuma.io/display-name": "cache"})
    )
    await deployment.sync()
    name = hashed_name("default", "cache", "zone-a")
    assert list(await deployment.documents(GLOBAL, "MeshService")) == [name]
    assert list(await deployment.documents("zone-b", "MeshService")) == [name]
    # Renamed (its display name), then gone: no copy under either name is left.
    await deployment.put(
        "zone-a", mesh_service("cache-v2", "zone-a", labels={"kuma.io/display-name": "store"})
    )
    await deployment.sync()
    renamed = hashed_name("default", "store", "zone-a")
    assert list(await deployment.documents(GLOBAL, "MeshService")) == [renamed]
    assert list(await deployment.documents("zone-b", "MeshService")) == [renamed]
    await deployment.delete("zone-a", "MeshService", "default", "cache-v2")
    await deployment.sync()
    assert await deployment.documents(GLOBAL, "MeshService") == {}
    assert await deployment.documents("zone-b", "MeshService") == {}


async def test_a_disabled_zones_mesh_services_leave_the_other_zones(deployment: Deployment):
    await deployment.put("zone-a", mesh_service("redis", "zone-a"))
    await deployment.sync()
    name = hashed_name("default", "redis", "zone-a")
    assert list(await deployment.documents("zone-b", "MeshService")) == [name]
    for enabled, expected in ((False, []), (True, [name])):
        async with deployment.stores[GLOBAL].writing(Origin.LOCAL) as transaction:
            await deployment.stores[GLOBAL].put_in(
                transaction, parse_resource({"type": "Zone", "name": "zone-a", "enabled": enabled})
            )
        await deployment.sync()
        assert list(await deployment.documents("zone-b", "MeshService")) == expected
        # Global keeps it.
        assert list(await deployment.documents(GLOBAL, "MeshService")) == [name]


async def test_a_second_sync_writes_nothing(deployment: Deployment):
    await deployment.put("zone-a", mesh_service("redis", "zone-a"))
    await deployment.put(GLOBAL, on_global(multizone_service("all", {"app": "x"}, 80)))
    await deployment.sync()
    before = {name: await store.revision() for name, store in deployment.stores.items()}
    await deployment.sync()
    after = {name: await store.revision() for name, store in deployment.stores.items()}
    assert after == before


@pytest.mark.postgres
async def test_workers_stopped_anywhere_converge(postgres_deployment: Deployment):
    """Workers cancelled at random points of their batches (a transaction cut short rolls
    back, as a kill's does) while both sides change; started again, every copy is right."""
    deployment = postgres_deployment
    rng = random.Random(7)
    cursors: list[int] = []
    deployment.batch = 7
    services = [f"svc-{index}" for index in range(60)]
    for start in range(0, len(services), 20):
        await deployment.put(
            "zone-a", *(mesh_service(name, "zone-a") for name in services[start : start + 20])
        )
    await deployment.put(
        GLOBAL, *(on_global(multizone_service(f"group-{i}", {"g": str(i)}, 80)) for i in range(15))
    )
    for _round in range(6):
        for zone in ZONES:
            task = asyncio.create_task(deployment.worker(zone).sync_once())
            await asyncio.sleep(rng.uniform(0.0, 0.8))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if zone == "zone-a":
                async with deployment.stores[GLOBAL].reading() as connection:
                    cursors.append(await read_cursor(connection, zone_source(zone)))
        gone = rng.sample(services, 4)
        for name in gone:
            services.remove(name)
            await deployment.delete("zone-a", "MeshService", "default", name)
        fresh = f"svc-new-{_round}"
        services.append(fresh)
        await deployment.put("zone-a", mesh_service(fresh, "zone-a"))
    await deployment.sync(rounds=3)
    # The cancels fell in the middle of the zone's catching up, at different points.
    head = await deployment.stores["zone-a"].revision()
    assert len({cursor for cursor in cursors if 0 < cursor < head}) >= 3, (cursors, head)
    expected = sorted(hashed_name("default", name, "zone-a") for name in services)
    assert sorted(await deployment.documents(GLOBAL, "MeshService")) == expected
    assert sorted(await deployment.documents("zone-b", "MeshService")) == expected
    assert sorted(await deployment.documents("zone-a", "MeshService")) == sorted(services)
    groups = sorted(hashed_name("default", f"group-{i}", max_length=63) for i in range(15))
    for zone in ZONES:
        assert sorted(await deployment.documents(zone, "MeshMultiZoneService")) == groups
    vips = [
        destination.vip
        for destination in (await deployment.stores["zone-b"].load_snapshot())
        .meshes["default"]
        .destinations.values()
    ]
    assert all(isinstance(vip, IPv4Address) for vip in vips) and len(set(vips)) == len(vips)


def test_a_gone_copy_from_elsewhere_asks_for_no_sweep():
    """A zone's copy from global, deleted there, had no copy on global: no sweep is due;
    a zone's own resource, gone, is looked for where its name puts it, and swept for
    when not there (its display name may have been another)."""
    copy = hashed_name("default", "redis", "zone-a", max_length=63)
    to_global = ZoneToGlobalKinds("zone-b")
    assert to_global.gone_name("MeshService", "default", copy)[1]
    where, certain = to_global.gone_name("MeshService", "default", "redis")
    assert (where, certain) == (hashed_name("default", "redis", "zone-b", max_length=63), False)
    to_zone = GlobalToZoneKinds("zone-b")
    assert to_zone.gone_name("MeshService", "default", copy) == (copy, True)
    assert to_zone.gone_name("MeshExternalService", "default", "db") == (
        hashed_name("default", "db", max_length=63),
        False,
    )
