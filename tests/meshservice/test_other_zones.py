"""Destinations of other zones in a zone's view: a MeshService copied from zone-a is
served by zone-a's ingresses (through this zone's egress when there is one), on every
port, as an endpoint of zone-a; a MeshMultiZoneService lists this zone's endpoints
first; followed change by change, the view equals a full load."""

from __future__ import annotations

import random
from ipaddress import ip_address
from typing import Any

from registry.feed.follower import RegistryFollower
from registry.feed.view import RegistryView
from registry.snapshot import Destination, Endpoint
from registry.store import Store
from tests.factories import dataplane, mesh
from tests.meshservice.meshtesting import (
    loaded,
    mesh_service,
    multizone_service,
    put,
)

ZONE = "zone-b"  # this registry's zone


def copied(name: str, zone: str = "zone-a", *ports: int) -> dict[str, Any]:
    """A MeshService of `zone` as the sync copies it here."""
    document = mesh_service(name, *(ports or (6379,)))
    document["name"] = f"{name}-{zone}"
    document["labels"] = {
        "kuma.io/mesh": "default",
        "kuma.io/origin": "global",
        "kuma.io/zone": zone,
        "kuma.io/env": "universal",
        "kuma.io/display-name": name,
    }
    return document


def ingress(
    name: str, zone: str | None, address: str, port: int, advertised: tuple[str, int] | None = None
) -> dict[str, Any]:
    networking: dict[str, Any] = {"address": address, "port": port}
    if advertised is not None:
        networking["advertisedAddress"], networking["advertisedPort"] = advertised
    document: dict[str, Any] = {"type": "ZoneIngress", "name": name, "networking": networking}
    if zone is not None:
        document["zone"] = zone
    return document


def egress(name: str, address: str, port: int) -> dict[str, Any]:
    return {"type": "ZoneEgress", "name": name, "networking": {"address": address, "port": port}}


def served_by(destination: Destination) -> list[list[tuple[str, int, str | None]]]:
    return [
        [(str(e.address), e.port, e.zone) for e in port.endpoints] for port in destination.ports
    ]


async def test_another_zones_mesh_service_is_served_by_that_zones_ingresses(store: Store):
    await put(
        store,
        mesh(),
        copied("redis", "zone-a", 6379, 9000),
        ingress("zone-a.in-1", "zone-a", "10.1.0.1", 10001, ("203.0.113.1", 443)),
        ingress("zone-a.in-2", "zone-a", "10.1.0.2", 10001),
        ingress("zone-c.in", "zone-c", "10.3.0.1", 10001),  # another zone's: not redis's
        ingress("own", None, "10.2.0.9", 10001),  # this zone's own: no
    )
    view = await loaded(store, ZONE)
    redis = view.snapshot.meshes["default"].destinations["MeshService/redis-zone-a"]
    assert redis.zone == "zone-a" and redis.service == "redis"
    through_ingresses = [("203.0.113.1", 443, "zone-a"), ("10.1.0.2", 10001, "zone-a")]
    assert served_by(redis) == [through_ingresses, through_ingresses]

    # Through this zone's egress when it has one.
    await put(store, egress("out", "10.2.0.1", 10002))
    view = await loaded(store, ZONE)
    redis = view.snapshot.meshes["default"].destinations["MeshService/redis-zone-a"]
    assert served_by(redis) == [[("10.2.0.1", 10002, "zone-a")]] * 2


async def test_a_multizone_service_lists_this_zones_endpoints_first(store: Store):
    await put(
        store,
        mesh(),
        dataplane("redis-1", "10.2.0.5", "redis", port=6379),
        mesh_service("redis", 6379, labels={"kuma.io/zone": ZONE, "kuma.io/display-name": "redis"}),
        copied("redis", "zone-a"),
        copied("redis", "zone-c"),
        # Two of zone-a's behind its one ingress: that endpoint once.
        {**copied("redis", "zone-a"), "name": "redis-zone-a-2"},
        ingress("zone-a.in", "zone-a", "10.1.0.1", 10001),
        ingress("zone-c.in", "zone-c", "10.3.0.1", 10001),
        multizone_service("redis", {"kuma.io/display-name": "redis"}, 6379),
    )
    view = await loaded(store, ZONE)
    group = view.snapshot.meshes["default"].destinations["MeshMultiZoneService/redis"]
    assert group.ports[0].endpoints == (
        Endpoint("redis-1", ip_address("10.2.0.5"), 6379),
        Endpoint("zone-a.in", ip_address("10.1.0.1"), 10001, zone="zone-a"),
        Endpoint("zone-c.in", ip_address("10.3.0.1"), 10001, zone="zone-c"),
    )


async def test_followed_changes_give_a_full_loads_destinations(store: Store):
    """Ingresses, egresses and copied MeshServices come, change and go at random: the
    follower's destinations are a full load's, and each delta names those that differ."""
    published: list[Any] = []
    follower = RegistryFollower(store, lambda s, d: published.append((s, d)), local_zone=ZONE)
    await put(store, mesh(), multizone_service("all", {"kuma.io/display-name": "redis"}, 6379))
    await follower.catch_up()
    rng = random.Random(16)
    for step in range(80):
        zone = rng.choice(["zone-a", "zone-c"])
        choice = rng.randrange(4)
        if choice == 0:
            document = ingress(
                f"{zone}.in-{rng.randrange(2)}", zone, f"10.9.0.{rng.randrange(1, 5)}", 10001
            )
        elif choice == 1:
            document = copied("redis", zone)
        elif choice == 2:
            document = egress(f"out-{rng.randrange(2)}", f"10.8.0.{step % 200 + 1}", 10002)
        else:
            kind = rng.choice(["ZoneIngress", "ZoneEgress", "MeshService"])
            name = {
                "ZoneIngress": f"{zone}.in-{rng.randrange(2)}",
                "ZoneEgress": f"out-{rng.randrange(2)}",
                "MeshService": f"redis-{zone}",
            }[kind]
            mesh_name = "default" if kind == "MeshService" else ""
            try:
                await store.delete_resource(kind, mesh_name, name)
            except Exception:  # noqa: BLE001 - absent: nothing changed
                continue
            document = None
        if document is not None:
            await put(store, document)
        before = follower.view.snapshot
        await follower.catch_up()
        fresh = RegistryView(ZONE)
        fresh.apply_batch(await store.read_all())
        followed = follower.view.snapshot.meshes["default"].destinations
        assert dict(followed) == dict(fresh.snapshot.meshes["default"].destinations)
        snapshot, delta = published[-1]
        if snapshot is before or delta is None:
            continue
        old = before.meshes["default"].destinations
        differing = {key for key in set(old) | set(followed) if old.get(key) != followed.get(key)}
        assert differing <= {key for _, key in delta.destinations}
