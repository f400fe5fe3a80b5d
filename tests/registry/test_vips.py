"""VIP allocation: stable, unique across meshes, quarantined before reuse."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Any

import pytest
from sqlalchemy import func, select

from registry.errors import VipPoolExhausted
from registry.models import LEGACY_VIP_KIND, VipRow
from registry.schema import Resource, parse_resource
from registry.store import Store
from registry.store.vips import usable_range
from tests.registry.registrytesting import mesh, registered_dataplane
from tests.serve_settings import vip_settings

# Two usable addresses, 10.200.0.1 and 10.200.0.2 (none a dataplane's): small enough to run out.
TINY = IPv4Network("10.200.0.0/30")


async def vips_of(store: Store, mesh_name: str = "default") -> dict[str, IPv4Address | None]:
    return {service.name: service.vip for service in await store.list_services(mesh_name)}


async def test_vips_come_from_240_0_0_0_slash_4_after_the_network_address(store: Store):
    await store.put_many([mesh(), registered_dataplane("web-1"), registered_dataplane("api-1")])

    vips = await vips_of(store)

    assert sorted(vips.values()) == [IPv4Address("240.0.0.1"), IPv4Address("240.0.0.2")]
    assert all(vip in IPv4Network("240.0.0.0/4") for vip in vips.values())


async def test_a_vip_is_stable_across_updates_and_a_new_store(store: Store, make_store):
    await store.put_many([mesh(), registered_dataplane("web-1"), registered_dataplane("api-1")])
    before = await vips_of(store)

    await store.put(registered_dataplane("web-1", port=9999))
    restarted = make_store()  # a new engine over the same database, as after a restart
    await restarted.put(registered_dataplane("web-2", "10.0.0.2"))
    await restarted.delete_dataplane("default", "web-1")

    assert await vips_of(restarted) == before
    snapshot = await restarted.load_snapshot()
    assert snapshot.meshes["default"].services["web"].vip == before["web"]


async def test_one_service_name_in_two_meshes_gets_two_vips(store: Store):
    await store.put_many(
        [
            mesh("a"),
            mesh("b"),
            registered_dataplane("web-1", mesh="a"),
            registered_dataplane("web-1", mesh="b"),
        ]
    )

    in_a, in_b = (await vips_of(store, "a"))["web"], (await vips_of(store, "b"))["web"]

    assert in_a is not None and in_b is not None and in_a != in_b


async def test_a_released_vip_is_not_reused_during_its_quarantine(make_store):
    store = make_store(vip_settings(vip_cidr=str(TINY)))
    await store.put_many([mesh(), registered_dataplane("web-1", "10.0.0.1", "old")])
    old_vip = (await vips_of(store))["old"]
    await store.delete_dataplane("default", "web-1")

    await store.put(registered_dataplane("new-1"))
    assert (await vips_of(store))["new"] != old_vip

    with pytest.raises(VipPoolExhausted, match="10.200.0.0/30"):
        await store.put(registered_dataplane("third-1"))
    # The failed write left nothing behind.
    assert set(await vips_of(store)) == {"new"}


async def test_a_vip_is_reused_once_its_quarantine_is_over(make_store):
    store = make_store(vip_settings(vip_cidr=str(TINY), vip_quarantine=0))
    await store.put_many(
        [
            mesh(),
            registered_dataplane("web-1", "10.0.0.1", "old"),
            registered_dataplane("x-1"),
        ]
    )
    old_vip = (await vips_of(store))["old"]
    await store.delete_dataplane("default", "web-1")

    await store.put(registered_dataplane("new-1"))

    assert (await vips_of(store))["new"] == old_vip
    # And the service that gave it up gets another, when one is free.
    with pytest.raises(VipPoolExhausted):
        await store.put(registered_dataplane("web-1", "10.0.0.1", "old"))


async def test_a_returning_service_gets_its_own_vip_back(make_store):
    store = make_store(vip_settings(vip_cidr=str(TINY), vip_quarantine=0))
    await store.put_many([mesh(), registered_dataplane("web-1")])
    vip = (await vips_of(store))["web"]
    await store.delete_dataplane("default", "web-1")
    assert await vips_of(store) == {}

    await store.put(registered_dataplane("web-2", "10.0.0.9"))

    assert (await vips_of(store))["web"] == vip


async def test_a_deleted_mesh_quarantines_its_vips(make_store):
    store = make_store(vip_settings(vip_cidr=str(TINY)))
    await store.put_many([mesh(), registered_dataplane("web-1"), registered_dataplane("api-1")])
    await store.delete_mesh("default")
    await store.put(mesh())

    with pytest.raises(VipPoolExhausted):
        await store.put(registered_dataplane("db-1"))
    await store.put(registered_dataplane("api-9"))
    assert (await vips_of(store))["api"] is not None


async def test_ipv6_vips_when_a_range_is_configured(make_store):
    store = make_store(vip_settings(vip6_cidr="fd00:5::/120"))
    await store.put_many([mesh(), registered_dataplane("web-1"), registered_dataplane("api-1")])

    services = {s.name: s.vip6 for s in await store.list_services("default")}

    assert sorted(v for v in services.values() if v) == [
        IPv6Address("fd00:5::1"),
        IPv6Address("fd00:5::2"),
    ]
    snapshot = await store.load_snapshot()
    assert snapshot.meshes["default"].services["api"].vip6 == services["api"]


async def test_a_service_from_before_an_ipv6_range_gets_one_when_next_written(store, make_store):
    await store.put_many([mesh(), registered_dataplane("web-1")])
    assert (await store.list_services("default"))[0].vip6 is None

    with_ipv6 = make_store(vip_settings(vip6_cidr="fd00::/64"))
    await with_ipv6.put(registered_dataplane("web-2", "10.0.0.2"))

    (web,) = await with_ipv6.list_services("default")
    assert web.vip == IPv4Address("240.0.0.1")
    assert web.vip6 == IPv6Address("fd00::1")


@pytest.mark.parametrize(
    ("network", "first", "last"),
    [
        ("240.0.0.0/4", "240.0.0.1", "255.255.255.254"),
        ("10.0.0.0/30", "10.0.0.1", "10.0.0.2"),
        ("10.0.0.0/31", "10.0.0.0", "10.0.0.1"),
        ("10.0.0.7/32", "10.0.0.7", "10.0.0.7"),
    ],
)
def test_usable_range_skips_network_and_broadcast(network, first, last):
    low, high = usable_range(IPv4Network(network))
    assert (IPv4Address(low), IPv4Address(high)) == (IPv4Address(first), IPv4Address(last))


async def test_after_a_range_change_the_holes_below_the_top_are_used(make_store):
    low = make_store(vip_settings(vip_cidr="10.200.0.0/30"))  # .1 .2
    high = make_store(vip_settings(vip_cidr="10.200.0.4/30"))  # .5 .6
    wide = make_store(vip_settings(vip_cidr="10.200.0.0/29"))  # .1 to .6
    await low.put_many([mesh(), registered_dataplane("c-1")])
    await high.put_many([registered_dataplane("a-1"), registered_dataplane("b-1")])

    for service in ("d", "e", "f"):
        await wide.put(registered_dataplane(f"{service}-1", "10.0.0.1", service))

    vips = {name: str(vip) for name, vip in (await vips_of(wide)).items()}
    assert vips == {
        "a": "10.200.0.5",
        "b": "10.200.0.6",
        "c": "10.200.0.1",
        "d": "10.200.0.2",
        "e": "10.200.0.3",
        "f": "10.200.0.4",
    }
    with pytest.raises(VipPoolExhausted):
        await wide.put(registered_dataplane("g-1"))


async def test_concurrent_writers_on_two_engines_all_succeed_with_distinct_vips(make_store):
    first, second = make_store(), make_store()
    await first.put(mesh())

    async def register(store: Store, prefix: str) -> None:
        for i in range(8):
            await store.put(
                registered_dataplane(f"{prefix}-{i}", "10.0.0.1", f"{prefix}-svc-{i % 4}")
            )

    await asyncio.gather(*(register(store, p) for store, p in [(first, "a"), (second, "b")] * 2))

    vips = await vips_of(first)
    assert sorted(vips) == sorted(f"{p}-svc-{i}" for p in "ab" for i in range(4))
    assert len(set(vips.values())) == len(vips)
    assert await first.revision() == 1 + 4 * 8


# -- VIPs of MeshServices and their kin -------------------------------------------------


def service_model(kind: str, name: str, mesh_name: str = "default") -> Resource:
    specs: dict[str, dict[str, Any]] = {
        "MeshService": {"ports": [{"port": 6379}]},
        "MeshExternalService": {"match": {"port": 80}},
        "MeshMultiZoneService": {
            "selector": {"meshService": {"matchLabels": {"app": name}}},
            "ports": [{"port": 6379}],
        },
    }
    return parse_resource({"type": kind, "mesh": mesh_name, "name": name, "spec": specs[kind]})


async def kind_vips(store: Store, kind: str | None = None) -> dict[tuple[str, str], IPv4Address]:
    """The active VIPs of resources, by (kind, name); of `kind` only when given."""
    async with store.reading() as connection:
        rows = await connection.execute(
            select(VipRow.kind, VipRow.service, VipRow.address).where(
                VipRow.released_at.is_(None), VipRow.kind != LEGACY_VIP_KIND
            )
        )
        return {
            (row_kind, name): IPv4Address(address)
            for row_kind, name, address in rows
            if kind in (None, row_kind)
        }


def test_the_legacy_range_leaves_out_the_ranges_of_the_service_kinds():
    def shown(spans: tuple[tuple[int, int], ...]) -> list[tuple[str, str]]:
        return [(str(IPv4Address(low)), str(IPv4Address(high))) for low, high in spans]

    settings = vip_settings()
    assert shown(settings.spans(LEGACY_VIP_KIND)) == [
        ("240.0.0.1", "240.255.255.255"),
        ("244.0.0.0", "255.255.255.254"),
    ]
    assert shown(settings.spans("MeshService")) == [("241.0.0.1", "241.255.255.254")]
    assert shown(settings.spans("MeshExternalService")) == [("242.0.0.1", "242.255.255.254")]
    assert shown(settings.spans("MeshMultiZoneService")) == [("243.0.0.1", "243.255.255.254")]


async def test_each_service_kind_takes_its_vip_from_its_own_range_when_written(store):
    await store.put(mesh())
    async with store.writing() as transaction:
        for kind in ("MeshService", "MeshExternalService", "MeshMultiZoneService"):
            await store.put_in(transaction, service_model(kind, "redis"))
            # Allocated in the write's own transaction.
            assert await transaction.connection.scalar(
                select(func.count()).select_from(VipRow).where(VipRow.kind == kind)
            )
    assert await kind_vips(store) == {
        ("MeshService", "redis"): IPv4Address("241.0.0.1"),
        ("MeshExternalService", "redis"): IPv4Address("242.0.0.1"),
        ("MeshMultiZoneService", "redis"): IPv4Address("243.0.0.1"),
    }
    await store.put(service_model("MeshService", "redis"))  # updated: the same VIP
    await store.put(service_model("MeshService", "kafka"))
    assert await kind_vips(store, "MeshService") == {
        ("MeshService", "redis"): IPv4Address("241.0.0.1"),
        ("MeshService", "kafka"): IPv4Address("241.0.0.2"),
    }


async def test_a_legacy_service_and_a_meshservice_of_one_name_hold_a_vip_each(store):
    await store.put_many([mesh(), registered_dataplane("redis-1")])
    await store.put(service_model("MeshService", "redis"))

    assert (await vips_of(store)) == {"redis": IPv4Address("240.0.0.1")}
    assert await kind_vips(store) == {("MeshService", "redis"): IPv4Address("241.0.0.1")}
    # Each goes its own way.
    await store.delete_dataplane("default", "redis-1")
    assert await kind_vips(store) == {("MeshService", "redis"): IPv4Address("241.0.0.1")}
    await store.put(registered_dataplane("redis-2"))
    await store.delete_resource("MeshService", "default", "redis")
    assert await kind_vips(store) == {}
    assert (await vips_of(store)) == {"redis": IPv4Address("240.0.0.1")}


async def test_the_legacy_allocator_never_hands_out_a_service_kind_address(make_store):
    # Legacy .1 to .6; MeshServices .5 and .6, which legacy services must leave alone.
    store = make_store(
        vip_settings(vip_cidr="10.200.0.0/29", mesh_service_cidr="10.200.0.4/30", vip_quarantine=0)
    )
    await store.put(mesh())
    for service in ("a", "b", "c"):
        await store.put(registered_dataplane(f"{service}-1", "10.0.0.1", service))
    with pytest.raises(VipPoolExhausted, match="10.200.0.0/29"):
        await store.put(registered_dataplane("d-1"))
    await store.put(service_model("MeshService", "redis"))
    assert await kind_vips(store) == {("MeshService", "redis"): IPv4Address("10.200.0.5")}
    # A quarantined MeshService VIP is no legacy service's either, once its quarantine is over.
    await store.delete_resource("MeshService", "default", "redis")
    with pytest.raises(VipPoolExhausted, match="10.200.0.0/29"):
        await store.put(registered_dataplane("d-1"))
    assert sorted(str(vip) for vip in (await vips_of(store)).values()) == [
        "10.200.0.1",
        "10.200.0.2",
        "10.200.0.3",
    ]


async def test_a_service_kind_vip_is_quarantined_then_reused_as_legacy_ones(make_store):
    tiny = {"mesh_external_service_cidr": "10.200.0.8/30"}  # .9 and .10
    store = make_store(vip_settings(**tiny))
    await store.put(mesh())
    await store.put(service_model("MeshExternalService", "a"))
    await store.put(service_model("MeshExternalService", "b"))
    await store.delete_resource("MeshExternalService", "default", "a")
    with pytest.raises(VipPoolExhausted, match="--mesh-external-service-cidr"):
        await store.put(service_model("MeshExternalService", "c"))
    # Its own VIP comes back to the resource that gave it up.
    await store.put(service_model("MeshExternalService", "a"))
    assert await kind_vips(store) == {
        ("MeshExternalService", "a"): IPv4Address("10.200.0.9"),
        ("MeshExternalService", "b"): IPv4Address("10.200.0.10"),
    }
    # With no quarantine, another takes it.
    reusing = make_store(vip_settings(**tiny, vip_quarantine=0))
    await reusing.delete_resource("MeshExternalService", "default", "a")
    await reusing.put(service_model("MeshExternalService", "c"))
    assert (await kind_vips(store))[("MeshExternalService", "c")] == IPv4Address("10.200.0.9")


async def test_a_deleted_mesh_quarantines_the_vips_of_its_service_kinds(make_store):
    store = make_store(vip_settings(mesh_service_cidr="10.200.0.0/30"))  # .1 and .2
    await store.put_many([mesh(), mesh("other")])
    await store.put(service_model("MeshService", "redis", "other"))
    await store.put(service_model("MeshService", "kafka", "other"))
    await store.delete_mesh("other")
    assert await kind_vips(store) == {}
    with pytest.raises(VipPoolExhausted):
        await store.put(service_model("MeshService", "redis"))


async def test_a_global_control_plane_allocates_no_service_kind_vip(store):
    on_global = Store(store.engine, store.vips, mode="global")
    await on_global.put(mesh())
    await on_global.put(service_model("MeshMultiZoneService", "redis"))
    assert await kind_vips(store) == {}
