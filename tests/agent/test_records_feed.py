"""The per-dataplane records feed: what an agent is sent, followed change by change, is
what its dataplane sees (registry.snapshot's rule) and what a whole answer gives; a
change it cannot see sends nothing; and the agent's DNS answers as the control plane
answers its dataplane.

A random registry changes step by step (legacy services, other zones' services,
permissions, mTLS, meshServices modes, destinations of this zone and others, hostname
zones, the followed dataplanes' services and reach, a mesh that comes and goes, now and
then a snapshot without a delta); agents follow it, each asking after a random number of
steps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, ip_address
from types import MappingProxyType
from typing import Any

import immutables
import pytest
from dns.rdatatype import SOA

from dnsserver import Handler
from meshdns.agent_records import LocalRecords, carries_changes
from registry.agents.service_feed import ServiceFeed, dataplane_client
from registry.feed.states import DataplaneState, InboundState
from registry.snapshot import (
    BackendRef,
    Client,
    Delta,
    Destination,
    DestinationPort,
    Endpoint,
    MeshView,
    Reach,
    Reachable,
    ServiceView,
    Snapshot,
    TrafficRule,
)
from tests.dns.dnstesting import ask, rcode, zone_config

LOCAL_ZONE = "zone-a"
SERVICES = ("web", "db", "redis", "api", "cache")
REMOTE = ("faraway", "db", "ledger")
ZONES = (
    frozenset({"svc.mesh.local", "mesh.local", "extsvc.mesh.local"}),
    frozenset({"svc.mesh.local", "mesh.local"}),
    frozenset({"svc.mesh.local", "mesh.local", "extsvc.mesh.local", "mzsvc.mesh.local"}),
)
PERMISSIONS = (
    (),
    (TrafficRule(frozenset({"*"}), frozenset({"*"})),),
    (TrafficRule(frozenset({"web"}), frozenset({"faraway", "redis"})),),
    (TrafficRule(frozenset({"db"}), frozenset({"*"})),),
)
REACHABLES = (
    None,
    Reachable(services=("db", "faraway")),
    Reachable(backends=(BackendRef("MeshService", "redis"),)),
    Reachable(backends=(BackendRef("MeshService", "redis", port=6379),)),
    Reachable(backends=(BackendRef("MeshService", labels=(("team", "payments"),)),)),
    Reachable(backends=()),
    Reachable(services=("web",), backends=(BackendRef("MeshExternalService", "httpbin"),)),
    Reachable(
        backends=(
            BackendRef("MeshService", labels=(("kuma.io/display-name", "redis"),)),
            BackendRef("MeshService", "api"),
        )
    ),
)
# The followed dataplanes: (mesh, name) and address.
FOLLOWED = {
    ("default", "web-1"): "10.0.0.1",
    ("default", "db-1"): "10.0.0.2",
    ("default", "narrow-1"): "10.0.0.3",
    ("other", "x-1"): "10.1.0.1",
}
MESHES = ("default", "other")


def endpoints(rng: random.Random, port: int, zone: str | None = None) -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(
            dataplane=f"dp-{index}",
            address=ip_address(f"10.{9 if zone else 2}.{rng.randrange(4)}.{index + 1}"),
            port=port,
            ready=rng.random() < 0.8,
            zone=zone,
            online=rng.random() < 0.9,
        )
        for index in range(rng.randrange(4))
    )


def make_service(rng: random.Random, name: str, remote: bool = False) -> ServiceView:
    return ServiceView(
        name=name,
        vip=IPv4Address(f"240.0.{rng.randrange(2)}.{rng.randrange(1, 250)}"),
        endpoints=endpoints(rng, 10001 if remote else 8080, "zone-b" if remote else None),
    )


def make_destination(rng: random.Random, key: str) -> Destination:
    kind, name = key.split("/")
    zone = "zone-b" if name.endswith("-b") else None
    display = name.removesuffix("-b")
    labels = {"kuma.io/display-name": display, "kuma.io/zone": zone or LOCAL_ZONE}
    if rng.random() < 0.5:
        labels["team"] = "payments"
    if kind == "MeshExternalService":
        ports: tuple[DestinationPort, ...] = (
            DestinationPort("443", 443, hosts=((f"{display}.example", 443),)),
        )
        hostnames = (f"{display}.extsvc.mesh.local",)
        vip = f"242.0.0.{rng.randrange(1, 250)}"
    else:
        ports = tuple(
            DestinationPort(port_name, number, endpoints=endpoints(rng, number, zone))
            for port_name, number in (("6379", 6379), ("metrics", 9121))[: rng.randrange(1, 3)]
        )
        suffix = f"svc.{zone}.mesh.local" if zone else "svc.mesh.local"
        hostnames = (f"{display}.{suffix}",)
        vip = f"241.0.0.{rng.randrange(1, 250)}"
    return Destination(
        kind=kind,
        name=name,
        hostnames=hostnames,
        vip=IPv4Address(vip),
        ports=ports,
        zone=zone,
        service=display if kind == "MeshService" else None,
        labels=MappingProxyType(labels),
    )


DESTINATIONS = (
    "MeshService/redis",
    "MeshService/api",
    "MeshService/redis-b",
    "MeshExternalService/httpbin",
)


@dataclass
class World:
    """A registry that changes at random, and the snapshots and deltas it publishes."""

    rng: random.Random
    revision: int = 1
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, ServiceView]] = field(default_factory=dict)
    remote: dict[str, dict[str, ServiceView]] = field(default_factory=dict)
    destinations: dict[str, dict[str, Destination]] = field(default_factory=dict)
    zones: frozenset[str] = ZONES[0]
    dataplanes: dict[tuple[str, str], DataplaneState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for mesh in MESHES:
            self._create(mesh)
        for key in FOLLOWED:
            self.dataplanes[key] = self._dataplane(key)

    def _create(self, mesh: str) -> None:
        rng = self.rng
        self.settings[mesh] = {
            "mtls": rng.random() < 0.7,
            "legacy_names": rng.random() < 0.8,
            "reachable_backends": rng.random() < 0.2,
            "permissions": rng.choice(PERMISSIONS),
        }
        self.services[mesh] = {n: make_service(rng, n) for n in SERVICES if rng.random() < 0.7}
        self.remote[mesh] = {n: make_service(rng, n, True) for n in REMOTE if rng.random() < 0.6}
        self.destinations[mesh] = {
            key: make_destination(rng, key) for key in DESTINATIONS if rng.random() < 0.7
        }

    def _dataplane(self, key: tuple[str, str]) -> DataplaneState:
        rng = self.rng
        address = ip_address(FOLLOWED[key])
        served = rng.sample(SERVICES, rng.randrange(1, 3))
        return DataplaneState(
            mesh=key[0],
            name=key[1],
            address=address,
            advertised=None,
            inbounds=tuple(InboundState(s, address, 8080, True) for s in served),
            reachable=rng.choice(REACHABLES),
        )

    def step(self) -> Delta | None:
        """Change a few things; what changed (None: a snapshot without a delta)."""
        rng = self.rng
        self.revision += rng.randrange(1, 3)
        services: set[tuple[str, str]] = set()
        meshes: set[str] = set()
        remote: set[str] = set()
        destinations: set[tuple[str, str]] = set()
        zones = False
        for _ in range(rng.randrange(1, 4)):
            mesh = rng.choice(MESHES)
            if mesh not in self.settings:
                if rng.random() < 0.3:
                    self._create(mesh)
                    meshes.add(mesh)
                continue
            what = rng.randrange(10)
            if what < 3:
                name = rng.choice(SERVICES)
                if name in self.services[mesh] and rng.random() < 0.3:
                    del self.services[mesh][name]
                else:
                    self.services[mesh][name] = make_service(rng, name)
                services.add((mesh, name))
            elif what == 3:
                name = rng.choice(REMOTE)
                if name in self.remote[mesh] and rng.random() < 0.4:
                    del self.remote[mesh][name]
                else:
                    self.remote[mesh][name] = make_service(rng, name, True)
                remote.add(mesh)
            elif what == 4:
                self.settings[mesh]["permissions"] = rng.choice(PERMISSIONS)
                remote.add(mesh)
            elif what == 5:
                setting = rng.choice(("mtls", "legacy_names", "reachable_backends"))
                self.settings[mesh][setting] = not self.settings[mesh][setting]
                meshes.add(mesh)
            elif what < 8:
                key = rng.choice(DESTINATIONS)
                if key in self.destinations[mesh] and rng.random() < 0.3:
                    del self.destinations[mesh][key]
                else:
                    self.destinations[mesh][key] = make_destination(rng, key)
                destinations.add((mesh, key))
            elif what == 8:
                followed = rng.choice(list(FOLLOWED))
                self.dataplanes[followed] = self._dataplane(followed)
            elif mesh == "other" and rng.random() < 0.5:
                for table in (self.settings, self.services, self.remote, self.destinations):
                    del table[mesh]
                meshes.add(mesh)
            else:
                self.zones = rng.choice(ZONES)
                zones = True
        if rng.random() < 0.03:
            return None
        return Delta(
            services=frozenset(services),
            meshes=frozenset(meshes),
            clients=True,
            remote=frozenset(remote),
            destinations=frozenset(destinations),
            hostname_zones=zones,
        )

    def snapshot(self) -> Snapshot:
        meshes = {
            mesh: MeshView(
                name=mesh,
                mtls=settings["mtls"],
                # As the registry's view holds them (persistent maps), and otherwise.
                services=immutables.Map(self.services[mesh]),
                remote=immutables.Map(self.remote[mesh]),
                permissions=settings["permissions"],
                destinations=MappingProxyType(dict(self.destinations[mesh])),
                legacy_names=settings["legacy_names"],
                reachable_backends=settings["reachable_backends"],
            )
            for mesh, settings in self.settings.items()
        }
        states = self.dataplanes.values()
        return Snapshot(
            revision=self.revision,
            meshes=MappingProxyType(meshes),
            dataplane_meshes=MappingProxyType({s.address: s.mesh for s in states}),
            client_services=MappingProxyType({s.address: frozenset(s.services) for s in states}),
            hostname_zones=self.zones,
            client_reach=MappingProxyType(
                {
                    s.address: reach
                    for s in states
                    if (reach := Reach.union([s.reachable])) is not None
                }
            ),
        )


@dataclass
class Follower:
    """An agent: its dataplane (None: the per-mesh route), what it holds, its DNS."""

    mesh: str
    dataplane: str | None
    records: LocalRecords = field(init=False)
    handler: Handler = field(init=False)
    sent: int = 0  # answers that carried something

    def __post_init__(self) -> None:
        self.records = LocalRecords(self.mesh)
        config = zone_config(default_mesh=self.mesh, local_zone=LOCAL_ZONE)
        self.handler = Handler(config, Snapshot.empty())

    async def poll(self, feed: ServiceFeed) -> dict[str, Any]:
        import json

        answer = json.loads(await feed.since(self.mesh, self.records.revision, 0, self.dataplane))
        if carries_changes(answer):
            self.sent += 1
            snapshot, delta = self.records.apply(answer)
            self.handler.update(snapshot, delta)
        self.records.revision = int(answer["revision"])
        return answer


def held(records: LocalRecords) -> tuple[Any, ...]:
    """What an agent holds, comparably."""
    view = records.snapshot.meshes.get(records.mesh)
    if view is None:
        return ()
    return (
        dict(view.services),
        dict(view.remote),
        dict(view.destinations),
        view.mtls,
        view.legacy_names,
        records.snapshot.hostname_zones,
    )


def expected(snapshot: Snapshot, mesh: str, client: Client) -> tuple[Any, ...]:
    """What the dataplane sees of its mesh, as the agent should hold it."""
    view = snapshot.meshes.get(mesh)
    if view is None:
        return ({}, {}, {}, False, True, snapshot.hostname_zones)
    sight = view.sight(client)
    return (
        dict(sight.services),
        dict(sight.remote),
        dict(sight.destinations),
        view.mtls,
        view.legacy_names,
        snapshot.hostname_zones,
    )


def client_of(world: World, follower: Follower) -> Client:
    if follower.dataplane is None:
        return Client(follower.mesh)
    return dataplane_client(
        follower.mesh, world.dataplanes.get((follower.mesh, follower.dataplane))
    )


def questions(snapshot: Snapshot) -> list[tuple[str, str]]:
    """Every name the registry could answer, with the type to ask."""
    asked: list[tuple[str, str]] = [("mesh.", "SOA"), ("nothing.svc.mesh.local.", "A")]
    for view in snapshot.meshes.values():
        for name in {*SERVICES, *REMOTE}:
            asked += [(f"{name}.mesh.", "A"), (f"{name}.endpoints.mesh.", "A")]
            asked.append((f"_{name}._tcp.mesh.", "SRV"))
        for service in (*view.services.values(), *view.remote.values()):
            assert service.vip is not None
            asked.append((service.vip.reverse_pointer + ".", "PTR"))
            for endpoint in service.endpoints:
                asked.append((f"{endpoint.address.packed.hex()}.addr.mesh.", "A"))
        for destination in view.destinations.values():
            assert destination.vip is not None
            asked.append((destination.vip.reverse_pointer + ".", "PTR"))
            for hostname in destination.hostnames:
                asked.append((hostname + ".", "A"))
                for port in destination.ports:
                    asked.append((f"_{port.name}._tcp.{hostname}.", "SRV"))
                    for endpoint in port.endpoints:
                        asked.append((f"{endpoint.address.packed.hex()}.addr.mesh.", "A"))
    return sorted(set(asked))


def reply(handler: Handler, name: str, rdtype: str, client: Any) -> tuple[Any, ...]:
    """A reply, comparably: rcode, records (SOA serials aside: an agent's moves only
    with what it is sent), the authority's owners."""
    message = ask(handler, name, rdtype, client=client)
    records = sorted(
        f"{rrset.name} {rdata.replace(serial=0) if rdata.rdtype == SOA else rdata}"
        for rrset in message.answer + message.additional
        for rdata in rrset
    )
    authority = sorted(str(rrset.name) for rrset in message.authority)
    return rcode(message), records, authority


@pytest.mark.parametrize("seed", range(6))
async def test_followed_changes_give_what_the_dataplane_sees(seed: int) -> None:
    rng = random.Random(seed)
    world = World(rng)
    feed = ServiceFeed(world.dataplanes.get, history=rng.choice((40, 10_000)))
    feed.publish(world.snapshot(), None)
    followers = [Follower(mesh, name) for mesh, name in FOLLOWED] + [
        Follower("default", None),
        Follower("other", None),
    ]
    for follower in followers:
        await follower.poll(feed)
    cp = Handler(zone_config(local_zone=LOCAL_ZONE), world.snapshot())
    for step in range(250):
        delta = world.step()
        snapshot = world.snapshot()
        feed.publish(snapshot, delta)
        cp.update(snapshot, None)
        for follower in followers:
            if rng.random() < 0.4:
                continue  # it asks later, for several changes at once
            before = held(follower.records)
            want = expected(snapshot, follower.mesh, client_of(world, follower))
            answer = await follower.poll(feed)
            assert held(follower.records) == want, (seed, step, follower)
            if not answer["full"] and before == want:
                assert not carries_changes(answer), (seed, step, answer)
            # A whole answer now gives the same.
            fresh = Follower(follower.mesh, follower.dataplane)
            await fresh.poll(feed)
            assert held(fresh.records) == want
            if step % 25 == 0 and follower.dataplane is not None:
                # Its DNS answers as the control plane answers its dataplane.
                address = ip_address(FOLLOWED[(follower.mesh, follower.dataplane)])
                fresh.handler.update(fresh.records.snapshot, None)
                for name, rdtype in questions(snapshot):
                    theirs = reply(cp, name, rdtype, address)
                    assert reply(follower.handler, name, rdtype, ip_address("127.0.0.1")) == theirs
                    assert reply(fresh.handler, name, rdtype, ip_address("127.0.0.1")) == theirs
    # Nothing was sent to most agents most of the time: changes they could not see.
    assert all(follower.sent < 250 for follower in followers)


async def test_a_change_the_dataplane_cannot_see_sends_nothing() -> None:
    rng = random.Random(1)
    redis = make_service(rng, "redis")
    db = make_service(rng, "db")
    view = MeshView(name="default", services=MappingProxyType({"redis": redis, "db": db}))
    state = DataplaneState(
        mesh="default",
        name="web-1",
        address=ip_address("10.0.0.1"),
        advertised=None,
        inbounds=(InboundState("web", ip_address("10.0.0.1"), 8080, True),),
        reachable=Reachable(services=("redis",)),
    )
    states = {("default", "web-1"): state}
    feed = ServiceFeed(states.get)
    feed.publish(Snapshot(revision=5, meshes=MappingProxyType({"default": view})), None)
    follower = Follower("default", "web-1")
    first = await follower.poll(feed)
    assert first["full"] and [s["name"] for s in first["services"]] == ["redis"]

    changed = replace(
        view, services=MappingProxyType({"redis": redis, "db": make_service(rng, "db")})
    )
    feed.publish(
        Snapshot(revision=6, meshes=MappingProxyType({"default": changed})),
        Delta(services=frozenset({("default", "db")})),
    )
    answer = await follower.poll(feed)
    assert not carries_changes(answer) and answer["revision"] == 6

    # Its own reach widens: db appears, and only that is sent.
    states[("default", "web-1")] = replace(state, reachable=None)
    feed.publish(Snapshot(revision=7, meshes=MappingProxyType({"default": changed})), Delta())
    answer = await follower.poll(feed)
    assert [s["name"] for s in answer["services"]] == ["db"] and answer["removed"] == []
