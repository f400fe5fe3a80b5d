"""VIP allocation: stable, unique across meshes, quarantined before reuse."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network, IPv6Address

import pytest

from meshdns.settings import Settings
from meshdns.wiring import vip_settings
from registry.errors import VipPoolExhausted
from registry.store import Store, VipSettings
from registry.store.vips import usable_range
from tests.registry.registrytesting import dataplane, mesh

# Two usable addresses, 10.200.0.1 and 10.200.0.2 (none a dataplane's): small enough to run out.
TINY = IPv4Network("10.200.0.0/30")


def vips_given(**settings: object) -> VipSettings:
    """`serve`'s VIP settings, with the options in `settings` given."""
    return vip_settings(Settings(**settings))  # type: ignore[arg-type]


async def vips_of(store: Store, mesh_name: str = "default") -> dict[str, IPv4Address | None]:
    return {service.name: service.vip for service in await store.list_services(mesh_name)}


async def test_vips_come_from_240_0_0_0_slash_4_after_the_network_address(store: Store):
    await store.put_many([mesh(), dataplane("web-1"), dataplane("api-1", service="api")])

    vips = await vips_of(store)

    assert sorted(vips.values()) == [IPv4Address("240.0.0.1"), IPv4Address("240.0.0.2")]
    assert all(vip in IPv4Network("240.0.0.0/4") for vip in vips.values())


async def test_a_vip_is_stable_across_updates_and_a_new_store(store: Store, make_store):
    await store.put_many([mesh(), dataplane("web-1"), dataplane("api-1", service="api")])
    before = await vips_of(store)

    await store.put(dataplane("web-1", port=9999))
    restarted = make_store()  # a new engine over the same database, as after a restart
    await restarted.put(dataplane("web-2", address="10.0.0.2"))
    await restarted.delete_dataplane("default", "web-1")

    assert await vips_of(restarted) == before
    snapshot = await restarted.load_snapshot()
    assert snapshot.meshes["default"].services["web"].vip == before["web"]


async def test_one_service_name_in_two_meshes_gets_two_vips(store: Store):
    await store.put_many(
        [mesh("a"), mesh("b"), dataplane("web-1", mesh="a"), dataplane("web-1", mesh="b")]
    )

    in_a, in_b = (await vips_of(store, "a"))["web"], (await vips_of(store, "b"))["web"]

    assert in_a is not None and in_b is not None and in_a != in_b


async def test_a_released_vip_is_not_reused_during_its_quarantine(make_store):
    store = make_store(vips_given(vip_cidr=str(TINY)))
    await store.put_many([mesh(), dataplane("web-1", service="old")])
    old_vip = (await vips_of(store))["old"]
    await store.delete_dataplane("default", "web-1")

    await store.put(dataplane("new-1", service="new"))
    assert (await vips_of(store))["new"] != old_vip

    with pytest.raises(VipPoolExhausted, match="10.200.0.0/30"):
        await store.put(dataplane("third-1", service="third"))
    # The failed write left nothing behind.
    assert set(await vips_of(store)) == {"new"}


async def test_a_vip_is_reused_once_its_quarantine_is_over(make_store):
    store = make_store(vips_given(vip_cidr=str(TINY), vip_quarantine=0))
    await store.put_many([mesh(), dataplane("web-1", service="old"), dataplane("x-1", service="x")])
    old_vip = (await vips_of(store))["old"]
    await store.delete_dataplane("default", "web-1")

    await store.put(dataplane("new-1", service="new"))

    assert (await vips_of(store))["new"] == old_vip
    # And the service that gave it up gets another, when one is free.
    with pytest.raises(VipPoolExhausted):
        await store.put(dataplane("web-1", service="old"))


async def test_a_returning_service_gets_its_own_vip_back(make_store):
    store = make_store(vips_given(vip_cidr=str(TINY), vip_quarantine=0))
    await store.put_many([mesh(), dataplane("web-1")])
    vip = (await vips_of(store))["web"]
    await store.delete_dataplane("default", "web-1")
    assert await vips_of(store) == {}

    await store.put(dataplane("web-2", address="10.0.0.9"))

    assert (await vips_of(store))["web"] == vip


async def test_a_deleted_mesh_quarantines_its_vips(make_store):
    store = make_store(vips_given(vip_cidr=str(TINY)))
    await store.put_many([mesh(), dataplane("web-1"), dataplane("api-1", service="api")])
    await store.delete_mesh("default")
    await store.put(mesh())

    with pytest.raises(VipPoolExhausted):
        await store.put(dataplane("db-1", service="db"))
    await store.put(dataplane("api-9", service="api"))
    assert (await vips_of(store))["api"] is not None


async def test_ipv6_vips_when_a_range_is_configured(make_store):
    store = make_store(vips_given(vip6_cidr="fd00:5::/120"))
    await store.put_many([mesh(), dataplane("web-1"), dataplane("api-1", service="api")])

    services = {s.name: s.vip6 for s in await store.list_services("default")}

    assert sorted(v for v in services.values() if v) == [
        IPv6Address("fd00:5::1"),
        IPv6Address("fd00:5::2"),
    ]
    snapshot = await store.load_snapshot()
    assert snapshot.meshes["default"].services["api"].vip6 == services["api"]


async def test_a_service_from_before_an_ipv6_range_gets_one_when_next_written(store, make_store):
    await store.put_many([mesh(), dataplane("web-1")])
    assert (await store.list_services("default"))[0].vip6 is None

    with_ipv6 = make_store(vips_given(vip6_cidr="fd00::/64"))
    await with_ipv6.put(dataplane("web-2", address="10.0.0.2"))

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
    low = make_store(vips_given(vip_cidr="10.200.0.0/30"))  # .1 .2
    high = make_store(vips_given(vip_cidr="10.200.0.4/30"))  # .5 .6
    wide = make_store(vips_given(vip_cidr="10.200.0.0/29"))  # .1 to .6
    await low.put_many([mesh(), dataplane("c-1", service="c")])
    await high.put_many([dataplane("a-1", service="a"), dataplane("b-1", service="b")])

    for service in ("d", "e", "f"):
        await wide.put(dataplane(f"{service}-1", service=service))

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
        await wide.put(dataplane("g-1", service="g"))


async def test_concurrent_writers_on_two_engines_all_succeed_with_distinct_vips(make_store):
    first, second = make_store(), make_store()
    await first.put(mesh())

    async def register(store: Store, prefix: str) -> None:
        for i in range(8):
            await store.put(dataplane(f"{prefix}-{i}", service=f"{prefix}-svc-{i % 4}"))

    await asyncio.gather(*(register(store, p) for store, p in [(first, "a"), (second, "b")] * 2))

    vips = await vips_of(first)
    assert sorted(vips) == sorted(f"{p}-svc-{i}" for p in "ab" for i in range(4))
    assert len(set(vips.values())) == len(vips)
    assert await first.revision() == 1 + 4 * 8
