"""Who sees which names (docs/dns.md): legacy names narrowed by reachableServices, other
zones' legacy names and destinations under mTLS and a permission, destinations narrowed
by reachableBackends and by a ReachableBackends mesh; the DNS answers and the snapshot's
rule (MeshView.sight) agree, and clients that see differently never share a cached
answer."""

from __future__ import annotations

import itertools
from dataclasses import replace
from ipaddress import IPv4Address, ip_address
from types import MappingProxyType

import pytest

from dnsserver import Handler
from registry.snapshot import (
    BackendRef,
    Client,
    Delta,
    Destination,
    MeshView,
    Reach,
    Reachable,
    Snapshot,
    TrafficRule,
)
from tests.dns.dnstesting import OUTSIDER, ask, endpoint, port, query, rcode, service
from tests.dns.dnstesting import standard_config as dns_config

LOCAL_ZONE = "zone-a"
INGRESS_B = "10.9.0.1"  # zone-b's ingress
HOSTNAME_ZONES = frozenset({"svc.mesh.local", "extsvc.mesh.local", "mesh.local"})

EVERYONE = TrafficRule(frozenset({"*"}), frozenset({"*"}))
WEB_TO_REDIS = TrafficRule(frozenset({"web"}), frozenset({"redis"}))


def ref(kind: str = "MeshService", name: str | None = None, **fields) -> BackendRef:
    labels = fields.pop("labels", None)
    return BackendRef(
        kind, name, labels=None if labels is None else tuple(sorted(labels.items())), **fields
    )


def local_labels(name: str, **extra: str) -> MappingProxyType:
    return MappingProxyType(
        {"kuma.io/display-name": name, "kuma.io/zone": LOCAL_ZONE, "kuma.io/origin": "zone"} | extra
    )


REDIS = Destination(
    kind="MeshService",
    name="redis",
    hostnames=("redis.svc.mesh.local",),
    vip=IPv4Address("241.0.0.1"),
    ports=(
        port("6379", 6379, endpoint("10.0.0.5", port=6379)),
        port("metrics", 9121, endpoint("10.0.0.5", port=9121)),
    ),
    service="redis",
    labels=local_labels("redis"),
)
API = Destination(
    kind="MeshService",
    name="api",
    hostnames=("api.svc.mesh.local",),
    vip=IPv4Address("241.0.0.2"),
    ports=(port("http", 8080, endpoint("10.0.0.6")),),
    service="api",
    labels=local_labels("api", team="payments"),
)
HTTPBIN = Destination(
    kind="MeshExternalService",
    name="httpbin",
    hostnames=("httpbin.extsvc.mesh.local",),
    vip=IPv4Address("242.0.0.1"),
    ports=(port("443", 443, hosts=(("httpbin.org", 443),)),),
    labels=local_labels("httpbin"),
)
# zone-b's redis, synced here under Kuma's hashed name, reached through zone-b's ingress.
REDIS_B = Destination(
    kind="MeshService",
    name="redis-zb4x9kd7c2f5w8q6",
    hostnames=("redis.svc.zone-b.mesh.local",),
    vip=IPv4Address("241.0.0.9"),
    ports=(port("6379", 6379, endpoint(INGRESS_B, port=10001, zone="zone-b")),),
    zone="zone-b",
    service="redis",
    labels=MappingProxyType(
        {"kuma.io/display-name": "redis", "kuma.io/zone": "zone-b", "kuma.io/origin": "global"}
    ),
)

# Clients: each a dataplane of mesh default serving `web` unless said otherwise.
WEB = ip_address("10.0.0.10")
DB = ip_address("10.0.0.20")  # serves db
ONLY_DB = ip_address("10.0.0.11")  # reachableServices: [db]
ONLY_REDIS = ip_address("10.0.0.12")  # reachableBackends: MeshService redis
REDIS_PORT = ip_address("10.0.0.13")  # reachableBackends: MeshService redis, port 6379
PAYMENTS = ip_address("10.0.0.14")  # reachableBackends: MeshServices labelled team=payments
REDIS_OF_B = ip_address("10.0.0.15")  # reachableBackends: by labels, zone-b's redis
NO_BACKENDS = ip_address("10.0.0.16")  # reachableBackends: {} (nothing)
SERVICES_AND_REDIS = ip_address("10.0.0.17")  # reachableServices [db], backends redis
SHARED = ip_address("10.0.0.18")  # two dataplanes: one narrows to db, one to redis
ALSO_ONLY_DB = ip_address("10.0.0.19")  # like ONLY_DB

REACH = {
    ONLY_DB: Reach.union([Reachable(services=("db",))]),
    ALSO_ONLY_DB: Reach.union([Reachable(services=("db",))]),
    ONLY_REDIS: Reach.union([Reachable(backends=(ref(name="redis"),))]),
    REDIS_PORT: Reach.union([Reachable(backends=(ref(name="redis", port=6379),))]),
    PAYMENTS: Reach.union([Reachable(backends=(ref(labels={"team": "payments"}),))]),
    REDIS_OF_B: Reach.union(
        [
            Reachable(
                backends=(ref(labels={"kuma.io/display-name": "redis", "kuma.io/zone": "zone-b"}),)
            )
        ]
    ),
    NO_BACKENDS: Reach.union([Reachable(backends=())]),
    SERVICES_AND_REDIS: Reach.union([Reachable(services=("db",), backends=(ref(name="redis"),))]),
    SHARED: Reach.union(
        [Reachable(services=("db",)), Reachable(backends=(ref(name="redis", port=6379),))]
    ),
}
CLIENTS = (WEB, DB, OUTSIDER, *REACH)


def visibility_snapshot(
    *,
    mtls: bool = True,
    permissions: tuple[TrafficRule, ...] = (EVERYONE,),
    reachable_backends: bool = False,
    legacy_names: bool = True,
) -> Snapshot:
    services = (
        service("web", "240.0.0.10", endpoints=(endpoint("10.0.0.10"),)),
        service("db", "240.0.0.20", endpoints=(endpoint("10.0.0.20"),)),
    )
    faraway = service(
        "faraway", "240.0.0.40", endpoints=(endpoint(INGRESS_B, port=10001, zone="zone-b"),)
    )
    default = MeshView(
        name="default",
        mtls=mtls,
        services=MappingProxyType({s.name: s for s in services}),
        remote=MappingProxyType({"faraway": faraway}),
        permissions=permissions,
        destinations=MappingProxyType({d.key: d for d in (REDIS, API, HTTPBIN, REDIS_B)}),
        legacy_names=legacy_names,
        reachable_backends=reachable_backends,
    )
    clients = {address: "default" for address in (WEB, DB, *REACH)}
    client_services = {address: frozenset({"web"}) for address in clients} | {DB: frozenset({"db"})}
    return Snapshot(
        revision=3,
        meshes=MappingProxyType({"default": default}),
        dataplane_meshes=MappingProxyType(clients),
        client_services=MappingProxyType(client_services),
        hostname_zones=HOSTNAME_ZONES,
        client_reach=MappingProxyType(REACH),
    )


# Each name, the type asked, and what it stands for (to compare with MeshView.sight).
NAMES = {
    "web.mesh.": ("A", ("service", "web")),
    "db.endpoints.mesh.": ("A", ("service", "db")),
    "faraway.mesh.": ("A", ("remote", "faraway")),
    "redis.svc.mesh.local.": ("A", ("destination", "MeshService/redis", None)),
    "_6379._tcp.redis.svc.mesh.local.": ("SRV", ("destination", "MeshService/redis", "6379")),
    "_metrics._tcp.redis.svc.mesh.local.": (
        "SRV",
        ("destination", "MeshService/redis", "metrics"),
    ),
    "api.svc.mesh.local.": ("A", ("destination", "MeshService/api", None)),
    "httpbin.extsvc.mesh.local.": ("A", ("destination", "MeshExternalService/httpbin", None)),
    "redis.svc.zone-b.mesh.local.": ("A", ("destination", REDIS_B.key, None)),
    "_6379._tcp.redis.svc.zone-b.mesh.local.": ("SRV", ("destination", REDIS_B.key, "6379")),
}
LEGACY = ("web.mesh.", "db.endpoints.mesh.")
REMOTE = ("faraway.mesh.",)
LOCAL_DESTINATIONS = (
    "redis.svc.mesh.local.",
    "_6379._tcp.redis.svc.mesh.local.",
    "_metrics._tcp.redis.svc.mesh.local.",
    "api.svc.mesh.local.",
    "httpbin.extsvc.mesh.local.",
)
OTHER_ZONE = ("redis.svc.zone-b.mesh.local.", "_6379._tcp.redis.svc.zone-b.mesh.local.")
REDIS_NAMES = (
    "redis.svc.mesh.local.",
    "_6379._tcp.redis.svc.mesh.local.",
    "_metrics._tcp.redis.svc.mesh.local.",
)


def handler_for(**changes: object) -> Handler:
    return Handler(dns_config(local_zone=LOCAL_ZONE), visibility_snapshot(**changes))  # type: ignore[arg-type]


def answered(handler: Handler, client) -> set[str]:
    """The names of NAMES that answer ``client`` with records."""
    seen = set()
    for name, (rdtype, _) in NAMES.items():
        reply = ask(handler, name, rdtype, client=client)
        if rcode(reply) == "NOERROR" and reply.answer:
            seen.add(name)
    return seen


def in_sight(snapshot: Snapshot, client) -> set[str]:
    """The names of NAMES that MeshView.sight says ``client`` sees."""
    who = snapshot.client(client, "default")
    sight = snapshot.meshes[who.mesh].sight(who)
    seen = set()
    for name, (_, (what, *key)) in NAMES.items():
        if what == "service" and key[0] in sight.services:
            seen.add(name)
        elif what == "remote" and key[0] in sight.remote:
            seen.add(name)
        elif what == "destination" and key[0] in sight.destinations:
            port_name = key[1]
            ports = {p.name for p in sight.destinations[key[0]].ports}
            if port_name is None or port_name in ports:
                seen.add(name)
    return seen


ALL = set(NAMES)


@pytest.mark.parametrize(
    ("changes", "client", "seen"),
    [
        # Nothing narrows, everyone may reach everything: all of it.
        ({}, WEB, ALL),
        ({}, OUTSIDER, ALL),  # "*" sources match a client that is no dataplane
        # Without mTLS no one sees another zone's names, legacy or new.
        ({"mtls": False}, WEB, ALL - set(REMOTE) - set(OTHER_ZONE)),
        # Without a permission neither.
        ({"permissions": ()}, WEB, ALL - set(REMOTE) - set(OTHER_ZONE)),
        # A permission for web to reach redis: zone-b's redis (its service) for web only.
        ({"permissions": (WEB_TO_REDIS,)}, WEB, ALL - set(REMOTE)),
        ({"permissions": (WEB_TO_REDIS,)}, DB, ALL - set(REMOTE) - set(OTHER_ZONE)),
        ({"permissions": (WEB_TO_REDIS,)}, OUTSIDER, ALL - set(REMOTE) - set(OTHER_ZONE)),
        # reachableServices: only those legacy names, and no destination at all.
        ({}, ONLY_DB, {"db.endpoints.mesh."}),
        # reachableBackends by name: that destination only (this zone's), every port;
        # the legacy names stay.
        ({}, ONLY_REDIS, {*LEGACY, *REMOTE, *REDIS_NAMES}),
        # With a port: the VIP and that port's SRV.
        (
            {},
            REDIS_PORT,
            {*LEGACY, *REMOTE, "redis.svc.mesh.local.", "_6379._tcp.redis.svc.mesh.local."},
        ),
        # By labels.
        ({}, PAYMENTS, {*LEGACY, *REMOTE, "api.svc.mesh.local."}),
        # By labels, another zone's: still under mTLS and a permission.
        ({}, REDIS_OF_B, {*LEGACY, *REMOTE, *OTHER_ZONE}),
        ({"permissions": ()}, REDIS_OF_B, {*LEGACY}),
        # reachableBackends: {} reaches no destination.
        ({}, NO_BACKENDS, {*LEGACY, *REMOTE}),
        # Both: those legacy names and those destinations.
        ({}, SERVICES_AND_REDIS, {"db.endpoints.mesh.", *REDIS_NAMES}),
        # Two dataplanes at one address: the union of what each reaches.
        (
            {},
            SHARED,
            {*LEGACY, *REMOTE, "redis.svc.mesh.local.", "_6379._tcp.redis.svc.mesh.local."},
        ),
        # A ReachableBackends mesh: only what reachableBackends name (none when unset).
        ({"reachable_backends": True}, WEB, {*LEGACY, *REMOTE}),
        ({"reachable_backends": True}, OUTSIDER, {*LEGACY, *REMOTE}),
        ({"reachable_backends": True}, ONLY_REDIS, {*LEGACY, *REMOTE, *REDIS_NAMES}),
        ({"reachable_backends": True}, ONLY_DB, {"db.endpoints.mesh."}),
        ({"reachable_backends": True}, REDIS_OF_B, {*LEGACY, *REMOTE, *OTHER_ZONE}),
        # An Exclusive mesh: no legacy names, whatever the reach.
        ({"legacy_names": False}, WEB, ALL - set(LEGACY) - set(REMOTE)),
        ({"legacy_names": False}, ONLY_DB, set()),
    ],
)
def test_who_sees_which_names(changes, client, seen):
    handler = handler_for(**changes)
    assert answered(handler, client) == seen
    assert in_sight(visibility_snapshot(**changes), client) == seen


SETTINGS = [
    {},
    {"mtls": False},
    {"permissions": ()},
    {"permissions": (WEB_TO_REDIS,)},
    {"reachable_backends": True},
    {"legacy_names": False},
]


@pytest.mark.parametrize("changes", SETTINGS)
def test_the_dns_answers_what_the_rule_says_for_every_client(changes):
    handler = handler_for(**changes)
    snapshot = visibility_snapshot(**changes)
    for client in CLIENTS:
        assert answered(handler, client) == in_sight(snapshot, client), client


@pytest.mark.parametrize("changes", SETTINGS)
def test_clients_that_see_differently_never_share_a_view_key(changes):
    handler = handler_for(**changes)
    snapshot = visibility_snapshot(**changes)
    zones = handler.zones
    for one, other in itertools.combinations(CLIENTS, 2):
        same_sight = in_sight(snapshot, one) == in_sight(snapshot, other)
        if zones.client_zone(one).key == zones.client_zone(other).key:
            assert same_sight, (one, other)


def test_clients_that_see_alike_share_one_variant():
    zones = handler_for().zones
    assert zones.client_zone(ONLY_DB) is zones.client_zone(ALSO_ONLY_DB)
    # Nothing narrowed, a permission to everything: the same variant for web and db.
    assert zones.client_zone(WEB).key == zones.client_zone(DB).key != "default"
    # Without mTLS, those who narrow nothing are answered from the mesh's own tables.
    plain = handler_for(mtls=False).zones
    assert plain.client_zone(WEB).key == plain.client_zone(OUTSIDER).key == "default"


def test_cached_answers_follow_each_client_whatever_the_order():
    """The answer cache keys replies by the view key: asking in any order gives each
    client what a fresh server gives it."""
    questions = [(name, rdtype) for name, (rdtype, _) in NAMES.items()]
    fresh = {
        client: [handler_for().handle(query(name, rdtype), client) for name, rdtype in questions]
        for client in CLIENTS
    }
    for order in (CLIENTS, tuple(reversed(CLIENTS))):
        handler = handler_for()
        for _ in range(2):  # the second round comes from the cache
            for client in order:
                replies = [
                    handler.handle(query(name, rdtype), client) for name, rdtype in questions
                ]
                assert replies == fresh[client], client


def test_a_port_narrows_srv_only():
    handler = handler_for()
    reply = ask(handler, "redis.svc.mesh.local.", "A", client=REDIS_PORT)
    assert [rdata.to_text() for rrset in reply.answer for rdata in rrset] == ["241.0.0.1"]
    reply = ask(handler, "_metrics._tcp.redis.svc.mesh.local.", "SRV", client=REDIS_PORT)
    assert (rcode(reply), reply.answer) == ("NXDOMAIN", [])
    reply = ask(handler, "1.0.0.241.in-addr.arpa.", "PTR", client=REDIS_PORT)
    assert [rdata.to_text() for rrset in reply.answer for rdata in rrset] == [
        "redis.svc.mesh.local."
    ]


# The rule itself, without DNS.


def test_a_name_ref_is_a_display_name_in_the_clients_own_zone():
    view = visibility_snapshot().meshes["default"]
    by_name = Client("default", frozenset({"web"}), REACH[ONLY_REDIS])
    assert view.seen_destination(by_name, REDIS) is REDIS
    assert view.seen_destination(by_name, REDIS_B) is None  # zone-b's: only by labels
    renamed = replace(REDIS, name="redis-abc", labels=local_labels("redis"))
    assert view.seen_destination(by_name, renamed) is renamed


def test_reach_union():
    assert Reach.union([None, None]) is None
    assert Reach.union([Reachable()]) is None  # neither set: nothing narrowed
    narrowing = Reachable(services=("db",))
    assert Reach.union([narrowing]) == Reach(frozenset({"db"}), (), every_destination=False)
    # One dataplane that narrows nothing: every legacy name, every destination.
    assert Reach.union([narrowing, None]) == Reach(None, (), every_destination=True)
    backends = Reachable(backends=(ref(name="redis"),))
    assert Reach.union([narrowing, backends]) == Reach(None, (ref(name="redis"),), False)


def test_permits_needs_mtls_and_an_allowing_rule():
    view = visibility_snapshot(permissions=(WEB_TO_REDIS,)).meshes["default"]
    web, db = Client("default", frozenset({"web"})), Client("default", frozenset({"db"}))
    assert view.permits(web, "redis") and not view.permits(db, "redis")
    assert not view.permits(web, "faraway")
    assert not replace(view, mtls=False).permits(web, "redis")


def with_destinations(snapshot: Snapshot, *destinations: Destination) -> Snapshot:
    view = snapshot.meshes["default"]
    changed = replace(view, destinations=MappingProxyType({d.key: d for d in destinations}))
    return replace(snapshot, revision=snapshot.revision + 1, meshes={"default": changed})


BEFORE = visibility_snapshot()
UPDATES = {
    "mode switched to ReachableBackends": (
        visibility_snapshot(reachable_backends=True),
        Delta(meshes=frozenset({"default"})),
    ),
    "another zone's destination gone, a local one gone": (
        with_destinations(BEFORE, API, HTTPBIN),
        Delta(destinations=frozenset({("default", REDIS.key), ("default", REDIS_B.key)})),
    ),
    "reach changed": (
        replace(
            BEFORE,
            revision=4,
            client_reach=MappingProxyType({**REACH, WEB: REACH[ONLY_DB]}),
        ),
        Delta(clients=True),
    ),
    "permissions changed": (
        visibility_snapshot(permissions=(WEB_TO_REDIS,)),
        Delta(remote=frozenset({"default"})),
    ),
}


@pytest.mark.parametrize("update", list(UPDATES))
def test_an_update_answers_as_a_rebuild(update):
    after, delta = UPDATES[update]
    for start, end, change in ((BEFORE, after, delta), (after, BEFORE, delta)):
        updated = Handler(dns_config(local_zone=LOCAL_ZONE), start)
        for client in CLIENTS:
            answered(updated, client)  # variants of the old tables, made and cached
        updated.update(end, change)
        rebuilt = Handler(dns_config(local_zone=LOCAL_ZONE), end)
        for client in CLIENTS:
            assert answered(updated, client) == answered(rebuilt, client), (update, client)
