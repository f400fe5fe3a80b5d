"""The store's reads and writes, on SQLite and Postgres."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, ip_address
from typing import Any

import pytest
from sqlalchemy import select

from registry.errors import DatabaseUnavailable, NotFound, SchemaOutdated
from registry.models import ChangeRow, DataplaneRow, InboundRow
from registry.schema import Dataplane, HostnameGenerator, Resource, parse_resource
from registry.store import Store, Unchanged
from registry.store.bulk import Replica
from tests.factories import inbound
from tests.registry.registrytesting import mesh, registered_dataplane
from tests.serve_settings import vip_settings


async def test_mesh_round_trip_keeps_creation_time_on_update(store: Store):
    assert await store.put(mesh("demo")) is True
    first = await store.get_mesh("demo")
    assert first.resource == mesh("demo")

    assert await store.put(mesh("demo", mtls=True)) is False
    second = await store.get_mesh("demo")
    assert second.resource == mesh("demo", mtls=True)
    assert second.creation_time == first.creation_time
    assert second.modification_time != first.modification_time
    assert second.creation_time.tzinfo is not None


async def test_stored_values_are_frozen(store: Store):
    await store.put(mesh("demo"))
    stored = await store.get_mesh("demo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        stored.creation_time = stored.modification_time  # type: ignore[misc]


async def test_list_meshes_pages_in_byte_order_with_total(store: Store):
    names = ["b", "a-b", "a.b", "a_b", "ab", "a0"]
    await store.put_many([mesh(name) for name in names])

    page = await store.list_meshes(size=2, offset=1)

    assert page.total == len(names)
    assert [item.resource.name for item in page.items] == sorted(names)[1:3]
    everything = await store.list_meshes()
    assert [item.resource.name for item in everything.items] == sorted(names)
    assert (await store.list_meshes(size=10, offset=10)).items == ()


async def test_dataplane_round_trip(store: Store):
    await store.put(mesh())
    resource = registered_dataplane(
        "web-1", tags={"version": "v1"}, advertisedAddress="203.0.113.5"
    )

    assert await store.put(resource) is True
    stored = await store.get_dataplane("default", "web-1")
    assert stored.resource == resource
    assert stored.resource.dump() == resource.dump()

    assert await store.put(registered_dataplane("web-1", port=9090)) is False
    updated = await store.get_dataplane("default", "web-1")
    assert updated.resource.networking.inbound[0].port == 9090
    assert updated.creation_time == stored.creation_time


async def test_missing_resources_are_not_found(store: Store):
    await store.put(mesh())
    with pytest.raises(NotFound, match="nope"):
        await store.get_mesh("nope")
    with pytest.raises(NotFound, match="web-9"):
        await store.get_dataplane("default", "web-9")
    with pytest.raises(NotFound):
        await store.delete_dataplane("default", "web-9")
    with pytest.raises(NotFound):
        await store.delete_mesh("nope")


async def test_dataplane_in_a_missing_mesh_is_refused_naming_the_mesh(store: Store):
    with pytest.raises(NotFound, match='mesh "elsewhere" does not exist'):
        await store.put(registered_dataplane("web-1", mesh="elsewhere"))
    assert (await store.list_dataplanes("elsewhere")).total == 0


async def test_put_many_writes_a_mesh_and_its_dataplanes_in_any_order(store: Store):
    created = await store.put_many([registered_dataplane("web-1", mesh="demo"), mesh("demo")])

    assert created == [True, True]
    assert (await store.get_dataplane("demo", "web-1")).resource.mesh == "demo"
    assert await store.put_many([mesh("demo"), registered_dataplane("web-2", mesh="demo")]) == [
        False,
        True,
    ]


async def test_put_many_is_all_or_nothing(store: Store):
    await store.put(mesh())
    before = await store.revision()

    with pytest.raises(NotFound, match="missing"):
        await store.put_many(
            [
                mesh("demo"),
                registered_dataplane("web-1", mesh="demo"),
                registered_dataplane("web-2"),
                registered_dataplane("web-3", mesh="missing"),
            ]
        )

    with pytest.raises(NotFound):
        await store.get_mesh("demo")
    assert (await store.list_dataplanes("default")).total == 0
    assert await store.revision() == before
    assert dict((await store.load_snapshot()).meshes["default"].services) == {}


async def test_list_dataplanes_filters_by_tags_of_one_inbound(store: Store):
    await store.put(mesh())
    await store.put(registered_dataplane("web-1", tags={"version": "v1"}))
    await store.put(
        registered_dataplane(
            "multi-1",
            "10.0.0.2",
            inbounds=[
                inbound("api", 80, tags={"version": "v2"}),
                inbound("web", 81, tags={"team": "core"}),
            ],
        )
    )
    await store.put(registered_dataplane("plain-1", "10.0.0.3", "db"))

    async def names(tags: dict[str, str]) -> list[str]:
        page = await store.list_dataplanes("default", tags=tags)
        assert page.total == len(page.items)
        return [item.resource.name for item in page.items]

    assert await names({"kuma.io/service": "web"}) == ["multi-1", "web-1"]
    assert await names({"kuma.io/service": "web", "version": "v1"}) == ["web-1"]
    assert await names({"kuma.io/service": "api", "version": "*"}) == ["multi-1"]
    assert await names({"version": "*"}) == ["multi-1", "web-1"]
    # Both tags exist on multi-1, but on different inbounds: no match.
    assert await names({"kuma.io/service": "web", "version": "v2"}) == []
    assert await names({"team": "*", "kuma.io/service": "web"}) == ["multi-1"]
    assert await names({}) == ["multi-1", "plain-1", "web-1"]


async def test_list_dataplanes_pages_with_a_filtered_total(store: Store):
    await store.put(mesh())
    await store.put_many(
        [registered_dataplane(f"web-{i}", f"10.0.0.{i + 1}") for i in range(5)]
        + [registered_dataplane("db-1", "10.0.1.1", "db")]
    )

    page = await store.list_dataplanes("default", size=2, offset=2, tags={"kuma.io/service": "web"})

    assert page.total == 5
    assert [item.resource.name for item in page.items] == ["web-2", "web-3"]


async def test_deleting_a_mesh_deletes_its_dataplanes(store: Store):
    await store.put_many(
        [
            mesh(),
            mesh("other"),
            registered_dataplane("web-1"),
            registered_dataplane("web-1", mesh="other"),
        ]
    )

    await store.delete_mesh("default")

    assert (await store.list_dataplanes("default")).total == 0
    with pytest.raises(NotFound):
        await store.get_dataplane("default", "web-1")
    assert (await store.get_dataplane("other", "web-1")).resource.mesh == "other"
    snapshot = await store.load_snapshot()
    assert list(snapshot.meshes) == ["other"]
    # Recreated, the mesh starts empty.
    await store.put(mesh())
    assert (await store.list_dataplanes("default")).total == 0


async def test_delete_dataplane(store: Store):
    await store.put_many(
        [mesh(), registered_dataplane("web-1"), registered_dataplane("web-2", "10.0.0.2")]
    )

    await store.delete_dataplane("default", "web-1")

    page = await store.list_dataplanes("default")
    assert [item.resource.name for item in page.items] == ["web-2"]
    services = await store.list_services("default")
    assert [(s.name, s.dataplanes) for s in services] == [("web", 1)]


async def test_list_services_counts_ready_endpoints_and_dataplanes(store: Store):
    await store.put_many(
        [
            mesh(),
            registered_dataplane("web-1"),
            registered_dataplane("web-2", "10.0.0.2", ready=False),
            registered_dataplane(
                "both-1",
                "10.0.0.3",
                inbounds=[inbound("web", 80), inbound("web", 81, ready=False), inbound("db", 5432)],
            ),
        ]
    )

    services = await store.list_services("default")

    assert [(s.name, s.endpoints, s.dataplanes) for s in services] == [("db", 1, 1), ("web", 2, 3)]
    assert all(isinstance(s.vip, IPv4Address) for s in services)
    assert services[0].vip != services[1].vip
    assert await store.list_services("nope") == []


async def test_ensure_mesh_creates_only_into_an_empty_registry(store: Store):
    assert await store.ensure_mesh("default") is True
    assert await store.ensure_mesh("default") is False
    revision = await store.revision()
    await store.delete_mesh("default")
    await store.put(mesh("demo"))
    assert await store.ensure_mesh("default") is False
    assert [item.resource.name for item in (await store.list_meshes()).items] == ["demo"]
    assert await store.revision() == revision + 2


async def test_a_committed_write_transaction_knows_the_revision_it_left(store: Store):
    async with store.writing() as transaction:
        await store.put_in(transaction, mesh())
        await store.put_in(transaction, registered_dataplane("web-1"))
        assert transaction.revision is None  # not committed yet
    assert transaction.revision == 2 == await store.revision()
    async with store.writing() as unchanged:
        pass  # records nothing: the registry's revision stays
    assert unchanged.revision == 2 == await store.revision()
    with pytest.raises(Unchanged):
        async with store.writing() as rolled_back:
            await store.put_in(rolled_back, mesh("other"))
            raise Unchanged
    assert rolled_back.revision is None
    assert await store.revision() == 2


async def test_every_change_gets_its_own_revision(store: Store):
    assert await store.revision() == 0
    await store.put(mesh())
    await store.put_many([registered_dataplane("web-1"), registered_dataplane("web-2", "10.0.0.2")])
    await store.delete_dataplane("default", "web-1")
    with pytest.raises(NotFound):
        await store.delete_dataplane("default", "web-1")
    # The mesh, two dataplanes, one deletion; the failed deletion took none.
    assert await store.revision() == 4
    assert (await store.load_snapshot()).revision == 4


async def test_snapshot_holds_meshes_services_endpoints_and_client_meshes(store: Store):
    await store.put_many(
        [
            mesh(),
            mesh("secure", mtls=True),
            registered_dataplane("web-1", "10.0.0.1", port=8080),
            registered_dataplane("web-2", "10.0.0.2", advertisedAddress="203.0.113.2", ready=False),
            registered_dataplane(
                "api-1",
                "10.0.1.1",
                mesh="secure",
                inbounds=[inbound("api", 9000, address="10.0.1.2")],
            ),
        ]
    )

    snapshot = await store.load_snapshot()

    assert snapshot.revision == 5  # one revision per resource written
    assert snapshot.meshes["default"].mtls is False
    assert snapshot.meshes["secure"].mtls is True
    web = snapshot.meshes["default"].services["web"]
    assert [(e.dataplane, str(e.address), e.port, e.ready) for e in web.endpoints] == [
        ("web-1", "10.0.0.1", 8080, True),
        ("web-2", "203.0.113.2", 8080, False),
    ]
    assert [e.dataplane for e in web.ready_endpoints] == ["web-1"]
    api = snapshot.meshes["secure"].services["api"]
    assert [(str(e.address), e.port) for e in api.endpoints] == [("10.0.1.2", 9000)]
    assert api.vip is not None and web.vip is not None and api.vip != web.vip
    assert dict(snapshot.dataplane_meshes) == {
        ip_address("10.0.0.1"): "default",
        ip_address("10.0.0.2"): "default",
        ip_address("10.0.1.1"): "secure",
        ip_address("10.0.1.2"): "secure",
    }
    with pytest.raises(TypeError):
        snapshot.meshes["other"] = snapshot.meshes["default"]  # type: ignore[index]


async def test_a_dataplane_moving_to_another_service_releases_the_old_one(store: Store):
    await store.put_many([mesh(), registered_dataplane("web-1", "10.0.0.1", "old")])

    await store.put(registered_dataplane("web-1", "10.0.0.1", "new"))

    services = (await store.load_snapshot()).meshes["default"].services
    assert list(services) == ["new"]
    assert [s.name for s in await store.list_services("default")] == ["new"]


async def test_a_database_without_the_schema_says_to_migrate(empty_database_url, make_store):
    from registry.store.database import create_engine

    engine = create_engine(empty_database_url)
    try:
        with pytest.raises(SchemaOutdated, match="meshdns migrate"):
            await Store(engine, vip_settings()).list_meshes()
        with pytest.raises(SchemaOutdated, match="meshdns migrate"):
            await Store(engine, vip_settings()).put(mesh())
    finally:
        await engine.dispose()


async def test_an_unreachable_database_raises_database_unavailable():
    from registry.store.database import create_engine

    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/meshdns")
    try:
        with pytest.raises(DatabaseUnavailable, match=r"127\.0\.0\.1:1.* unavailable"):
            await Store(engine, vip_settings()).list_meshes()
        with pytest.raises(DatabaseUnavailable):
            await Store(engine, vip_settings()).put(mesh())
    finally:
        await engine.dispose()


# Built by hand: a real failed aiosqlite connect leaves its worker thread calling back
# into the test's event loop after it has closed (aiosqlite's stop() is not awaited).
@pytest.mark.parametrize(
    ("message", "unavailable", "schema_missing"),
    [
        ("unable to open database file", True, False),
        ("database is locked", True, False),
        ("no such table: meshes", False, True),
    ],
)
def test_sqlite_errors_are_told_apart(message, unavailable, schema_missing):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from registry.store.database import is_schema_missing, is_unavailable

    error = OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))
    assert is_unavailable(error) is unavailable
    assert is_schema_missing(error) is schema_missing


# -- what MeshService selectors and reachability read of dataplanes ---------------------


def labelled_dataplane(name: str, address: str = "10.0.0.1") -> Dataplane:
    return registered_dataplane(
        name,
        address,
        inbounds=[inbound("redis", 6379, name="main"), inbound("redis-metrics", 9121)],
        labels={"app": "redis", "version": "v1"},
        transparentProxying={
            "reachableServices": ["web"],
            "reachableBackends": {"refs": [{"kind": "MeshService", "name": "web"}]},
        },
    )


async def stored_columns(store: Store, name: str) -> tuple[Any, Any, list[Any]]:
    async with store.reading() as connection:
        dataplane_id, labels, reachable = (
            await connection.execute(
                select(DataplaneRow.id, DataplaneRow.labels, DataplaneRow.reachable).where(
                    DataplaneRow.name == name
                )
            )
        ).one()
        names = list(
            await connection.scalars(
                select(InboundRow.name)
                .where(InboundRow.dataplane_id == dataplane_id)
                .order_by(InboundRow.position)
            )
        )
    return labels, reachable, names


EXPECTED_COLUMNS = (
    {"app": "redis", "version": "v1"},
    {"services": ["web"], "backends": {"refs": [{"kind": "MeshService", "name": "web"}]}},
    ["main", None],
)


async def test_a_dataplane_written_keeps_its_labels_reachability_and_inbound_names(store):
    await store.put_many([mesh(), labelled_dataplane("redis-1")])
    assert await stored_columns(store, "redis-1") == EXPECTED_COLUMNS
    # Written again without them, they are gone.
    await store.put(registered_dataplane("redis-1", "10.0.0.1", "web"))
    assert await stored_columns(store, "redis-1") == (None, None, [None])


async def test_dataplanes_written_in_bulk_keep_them_too(store):
    await store.put(mesh())
    async with store.writing() as transaction:
        await store.put_dataplanes(transaction, [Replica(labelled_dataplane("redis-1"))])
    assert await stored_columns(store, "redis-1") == EXPECTED_COLUMNS


# -- Kuma's service model ----------------------------------------------------------------


def meshservice(name: str, mesh_name: str = "default") -> Resource:
    return parse_resource(
        {"type": "MeshService", "mesh": mesh_name, "name": name, "spec": {"ports": [{"port": 80}]}}
    )


async def changes_after(store: Store, revision: int) -> list[tuple[str, str, str, bool]]:
    async with store.reading() as connection:
        rows = await connection.execute(
            select(ChangeRow.kind, ChangeRow.mesh, ChangeRow.name, ChangeRow.deleted)
            .where(ChangeRow.revision > revision)
            .order_by(ChangeRow.revision)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_the_service_model_is_stored_listed_and_deleted(store):
    await store.put_many(
        [mesh(), mesh("other"), meshservice("redis"), meshservice("redis", "other")]
    )
    assert (await store.get_resource("MeshService", "other", "redis")).resource.mesh == "other"
    in_default = await store.list_resources("MeshService", "default")
    assert [item.resource.mesh for item in in_default.items] == ["default"]
    everywhere = await store.list_resources("MeshService")
    assert [item.resource.mesh for item in everywhere.items] == ["default", "other"]
    with pytest.raises(NotFound, match='MeshService "redis" not found in mesh "third"'):
        await store.get_resource("MeshService", "third", "redis")
    with pytest.raises(NotFound, match="create it before MeshService"):
        await store.put(meshservice("redis", "third"))
    revision = await store.revision()
    await store.delete_resource("MeshService", "default", "redis")
    assert await changes_after(store, revision) == [("MeshService", "default", "redis", True)]


async def test_a_generator_is_recorded_under_no_mesh(store):
    generator = parse_resource(
        {
            "type": "HostnameGenerator",
            "name": "custom",
            "mesh": "default",  # as Kuma's documentation writes it: ignored
            "spec": {"selector": {"meshService": {}}, "template": "{{ .Name }}.mesh.local"},
        }
    )
    await store.put(generator)
    assert await changes_after(store, 0) == [("HostnameGenerator", "", "custom", False)]


async def test_deleting_a_mesh_records_a_tombstone_for_each_of_its_resources(store):
    documents = [
        {"type": "MeshService", "spec": {"ports": [{"port": 80}]}},
        {"type": "MeshExternalService", "spec": {"match": {"port": 80}}},
        {
            "type": "MeshMultiZoneService",
            "spec": {
                "selector": {"meshService": {"matchLabels": {"app": "a"}}},
                "ports": [{"port": 80}],
            },
        },
        {
            "type": "MeshTrafficPermission",
            "spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]},
        },
    ]
    await store.put_many(
        [mesh(), registered_dataplane("web-1")]
        + [parse_resource({**document, "mesh": "default", "name": "a"}) for document in documents]
    )
    revision = await store.revision()
    await store.delete_mesh("default")
    assert sorted(await changes_after(store, revision)) == sorted(
        [
            ("Dataplane", "default", "web-1", True),
            ("MeshService", "default", "a", True),
            ("MeshExternalService", "default", "a", True),
            ("MeshMultiZoneService", "default", "a", True),
            ("MeshTrafficPermission", "default", "a", True),
            ("Mesh", "default", "default", True),
        ]
    )
    assert (await store.list_resources("MeshService")).total == 0


@pytest.mark.parametrize(
    ("mode", "names"),
    [
        ("standalone", ["local-mesh-external-service", "local-universal-mesh-service"]),
        ("zone", ["local-mesh-external-service", "local-universal-mesh-service"]),
        (
            "global",
            [
                "synced-mesh-external-service",
                "synced-mesh-multi-zone-service",
                "synced-universal-mesh-service",
            ],
        ),
    ],
)
async def test_the_default_hostname_generators_are_created_when_absent(store, mode, names):
    in_mode = Store(store.engine, store.vips, mode=mode)
    assert sorted(await in_mode.ensure_hostname_generators()) == names
    revision = await store.revision()
    assert await in_mode.ensure_hostname_generators() == []
    assert await store.revision() == revision  # nothing written the second time
    stored = {
        item.resource.name: item.resource
        for item in (await store.list_resources("HostnameGenerator")).items
    }
    assert sorted(stored) == names
    for generator in stored.values():
        assert isinstance(generator, HostnameGenerator)
        origin = "global" if mode == "global" else "zone"
        assert generator.spec.selector.match_labels["kuma.io/origin"] == origin
        assert generator.labels == (None if mode == "global" else {"kuma.io/origin": "zone"})
    if mode != "global":
        service = stored["local-universal-mesh-service"]
        assert service.spec.template == "{{ .DisplayName }}.svc.mesh.local"
    # One deleted comes back.
    await in_mode.delete_resource("HostnameGenerator", "", names[0])
    assert await in_mode.ensure_hostname_generators() == [names[0]]
