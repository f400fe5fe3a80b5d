"""MeshServices and their kin in DNS: every name, type and rcode of the hostname zones
(docs/dns.md), from hand-built snapshots; and an incremental update equals a rebuild."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network
from types import MappingProxyType

import pytest

from dnsserver import Handler
from dnsserver.zonefile import zone_records
from registry.snapshot import Delta, MeshView, Snapshot, TrafficRule
from tests.dns.dnstesting import (
    NS_ADDRESS,
    OUTSIDER,
    REVISION,
    ask,
    destination,
    endpoint,
    flags,
    mesh,
    owners,
    port,
    query,
    rcode,
    rdatas,
    service,
    snapshot,
    standard_config,
)

ZONES = ("svc.mesh.local", "extsvc.mesh.local", "mzsvc.mesh.local", "mesh.local")
EXCLUSIVE_CLIENT = ip_address("10.1.0.1")  # a dataplane of mesh "exclusive"
TRANSFER_CLIENT = ip_address("192.0.2.9")
LOCAL_ZONE = "zone-a"

REDIS = destination(
    "redis",
    ("redis.svc.mesh.local",),
    "241.0.0.1",
    port(
        "6379",
        6379,
        endpoint("10.0.0.5", port=6379),
        endpoint("10.0.0.6", port=6379, ready=False),
        endpoint("10.0.0.7", port=6379, zone="zone-b"),
        endpoint("10.0.0.8", port=6379, online=False),
    ),
)
WEB = destination(
    "web",
    ("web.svc.mesh.local", "www.mesh.local"),
    "241.0.0.2",
    port("http", 80, endpoint("10.0.0.9", port=8080)),
)
HTTPBIN = destination(
    "httpbin",
    ("httpbin.extsvc.mesh.local",),
    "242.0.0.1",
    port("443", 443, endpoint("1.2.3.4", port=443), hosts=(("httpbin.org", 443),)),
    kind="MeshExternalService",
)
MULTI = destination("multi", ("multi.mzsvc.mesh.local",), "243.0.0.1", kind="MeshMultiZoneService")
NESTED = destination("nested", ("a.b.svc.mesh.local",), "241.0.0.3")
NO_VIP = destination("novip", ("novip.svc.mesh.local",), None)
UNZONED = destination("lost", ("lost.example.com",), "241.0.0.4")
# A hostname that is a zone's apex: the apex stays the server's.
APEX = destination("svc", ("svc.mesh.local",), "241.0.0.5")
# Two kinds claiming one name: the least key (kind/name) answers.
CLASH_SERVICE = destination("clash", ("clash.svc.mesh.local",), "241.0.0.6")
CLASH_EXTERNAL = destination(
    "clash", ("clash.svc.mesh.local",), "242.0.0.6", kind="MeshExternalService"
)

EXCLUSIVE = mesh(
    "exclusive",
    service("legacy", "240.1.0.1", endpoints=(endpoint("10.1.0.5", port=80),)),
    destinations=(
        destination(
            "legacy",
            ("legacy.svc.mesh.local",),
            "241.1.0.1",
            port("80", 80, endpoint("10.1.0.5", port=80)),
        ),
    ),
    legacy_names=False,
)


def destinations_snapshot(revision: int = REVISION) -> Snapshot:
    default = mesh(
        "default",
        service("web", "240.0.0.2", endpoints=(endpoint("10.0.0.9"),)),
        destinations=(
            REDIS,
            WEB,
            HTTPBIN,
            MULTI,
            NESTED,
            NO_VIP,
            UNZONED,
            APEX,
            CLASH_SERVICE,
            CLASH_EXTERNAL,
        ),
    )
    return snapshot(
        default,
        EXCLUSIVE,
        revision=revision,
        clients={str(EXCLUSIVE_CLIENT): "exclusive"},
        hostname_zones=ZONES,
    )


def config():
    return standard_config(local_zone=LOCAL_ZONE, allow_transfer=(ip_network("192.0.2.9/32"),))


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler(config(), destinations_snapshot())


SOA = f"ns.mesh. hostmaster.mesh. {REVISION} 3600 600 86400 30"

# (name, type, client) -> (rcode, answer, the zone of the SOA in authority or None)
CASES = {
    # Each zone's apex: SOA, NS (ns.<domain> for all: the server is one).
    ("svc.mesh.local.", "SOA", OUTSIDER): ("NOERROR", [SOA], None),
    ("svc.mesh.local.", "NS", OUTSIDER): ("NOERROR", ["ns.mesh."], None),
    ("extsvc.mesh.local.", "SOA", OUTSIDER): ("NOERROR", [SOA], None),
    ("mzsvc.mesh.local.", "NS", OUTSIDER): ("NOERROR", ["ns.mesh."], None),
    ("mesh.local.", "SOA", OUTSIDER): ("NOERROR", [SOA], None),
    ("mesh.local.", "NS", OUTSIDER): ("NOERROR", ["ns.mesh."], None),
    ("svc.mesh.local.", "A", OUTSIDER): ("NOERROR", [], "svc.mesh.local."),
    ("mesh.", "SOA", OUTSIDER): ("NOERROR", [SOA], None),
    # A MeshService: A = its VIP, AAAA NODATA, SRV per port.
    ("redis.svc.mesh.local.", "A", OUTSIDER): ("NOERROR", ["241.0.0.1"], None),
    ("ReDiS.SVC.mesh.LOCAL.", "A", OUTSIDER): ("NOERROR", ["241.0.0.1"], None),
    ("redis.svc.mesh.local.", "AAAA", OUTSIDER): ("NOERROR", [], "svc.mesh.local."),
    ("redis.svc.mesh.local.", "ANY", OUTSIDER): ("NOERROR", ["241.0.0.1"], None),
    ("redis.svc.mesh.local.", "TXT", OUTSIDER): ("NOERROR", [], "svc.mesh.local."),
    ("_6379._tcp.redis.svc.mesh.local.", "SRV", OUTSIDER): (
        "NOERROR",
        ["0 1 6379 0a000005.addr.mesh.", "1 1 6379 0a000007.addr.mesh."],
        None,
    ),
    ("_6379._tcp.redis.svc.mesh.local.", "A", OUTSIDER): ("NOERROR", [], "svc.mesh.local."),
    ("_tcp.redis.svc.mesh.local.", "SRV", OUTSIDER): ("NOERROR", [], "svc.mesh.local."),
    ("_6380._tcp.redis.svc.mesh.local.", "SRV", OUTSIDER): (
        "NXDOMAIN",
        [],
        "svc.mesh.local.",
    ),
    ("nope.svc.mesh.local.", "A", OUTSIDER): ("NXDOMAIN", [], "svc.mesh.local."),
    ("0a000005.addr.mesh.", "A", OUTSIDER): ("NOERROR", ["10.0.0.5"], None),
    ("0a000006.addr.mesh.", "A", OUTSIDER): ("NOERROR", ["10.0.0.6"], None),
    ("f1000001.addr.mesh.", "A", OUTSIDER): ("NOERROR", ["241.0.0.1"], None),
    ("1.0.0.241.in-addr.arpa.", "PTR", OUTSIDER): ("NOERROR", ["redis.svc.mesh.local."], None),
    # Hostnames of two zones; the legacy name of the same service answers apart.
    ("web.svc.mesh.local.", "A", OUTSIDER): ("NOERROR", ["241.0.0.2"], None),
    ("www.mesh.local.", "A", OUTSIDER): ("NOERROR", ["241.0.0.2"], None),
    ("_http._tcp.www.mesh.local.", "SRV", OUTSIDER): (
        "NOERROR",
        ["0 1 8080 0a000009.addr.mesh."],
        None,
    ),
    ("2.0.0.241.in-addr.arpa.", "PTR", OUTSIDER): (
        "NOERROR",
        ["web.svc.mesh.local.", "www.mesh.local."],
        None,
    ),
    ("web.mesh.", "A", OUTSIDER): ("NOERROR", ["240.0.0.2"], None),
    ("redis.mesh.", "A", OUTSIDER): ("NXDOMAIN", [], "mesh."),
    # A MeshExternalService: the endpoint given by name is the SRV target itself.
    ("httpbin.extsvc.mesh.local.", "A", OUTSIDER): ("NOERROR", ["242.0.0.1"], None),
    ("_443._tcp.httpbin.extsvc.mesh.local.", "SRV", OUTSIDER): (
        "NOERROR",
        ["0 1 443 01020304.addr.mesh.", "0 1 443 httpbin.org."],
        None,
    ),
    ("1.0.0.242.in-addr.arpa.", "PTR", OUTSIDER): (
        "NOERROR",
        ["httpbin.extsvc.mesh.local."],
        None,
    ),
    ("multi.mzsvc.mesh.local.", "A", OUTSIDER): ("NOERROR", ["243.0.0.1"], None),
    ("multi.svc.mesh.local.", "A", OUTSIDER): ("NXDOMAIN", [], "svc.mesh.local."),
    # Nesting: a name is in the longest zone it is under; empty non-terminals exist.
    ("a.b.svc.mesh.local.", "A", OUTSIDER): ("NOERROR", ["241.0.0.3"], None),
    ("b.svc.mesh.local.", "A", OUTSIDER): ("NOERROR", [], "svc.mesh.local."),
    ("c.b.svc.mesh.local.", "A", OUTSIDER): ("NXDOMAIN", [], "svc.mesh.local."),
    ("nope.mesh.local.", "A", OUTSIDER): ("NXDOMAIN", [], "mesh.local."),
    ("nope.extsvc.mesh.local.", "A", OUTSIDER): ("NXDOMAIN", [], "extsvc.mesh.local."),
    # No VIP, no name; a hostname under no zone is not answered; an apex stays ours.
    ("novip.svc.mesh.local.", "A", OUTSIDER): ("NXDOMAIN", [], "svc.mesh.local."),
    ("lost.example.com.", "A", OUTSIDER): ("REFUSED", [], None),
    ("5.0.0.241.in-addr.arpa.", "PTR", OUTSIDER): ("REFUSED", [], None),
    ("clash.svc.mesh.local.", "A", OUTSIDER): ("NOERROR", ["242.0.0.6"], None),
    # Exclusive: no legacy name of the mesh answers; its destinations and .addr do.
    ("legacy.svc.mesh.local.", "A", EXCLUSIVE_CLIENT): ("NOERROR", ["241.1.0.1"], None),
    ("legacy.mesh.", "A", EXCLUSIVE_CLIENT): ("NXDOMAIN", [], "mesh."),
    ("legacy.endpoints.mesh.", "A", EXCLUSIVE_CLIENT): ("NXDOMAIN", [], "mesh."),
    ("_legacy._tcp.mesh.", "SRV", EXCLUSIVE_CLIENT): ("NXDOMAIN", [], "mesh."),
    ("_80._tcp.legacy.svc.mesh.local.", "SRV", EXCLUSIVE_CLIENT): (
        "NOERROR",
        ["0 1 80 0a010005.addr.mesh."],
        None,
    ),
    ("0a010005.addr.mesh.", "A", EXCLUSIVE_CLIENT): ("NOERROR", ["10.1.0.5"], None),
    ("f0010001.addr.mesh.", "A", EXCLUSIVE_CLIENT): ("NXDOMAIN", [], "mesh."),
    ("1.0.1.241.in-addr.arpa.", "PTR", EXCLUSIVE_CLIENT): (
        "NOERROR",
        ["legacy.svc.mesh.local."],
        None,
    ),
    ("1.0.1.240.in-addr.arpa.", "PTR", EXCLUSIVE_CLIENT): ("REFUSED", [], None),
    ("5.0.1.10.in-addr.arpa.", "PTR", EXCLUSIVE_CLIENT): ("REFUSED", [], None),
    ("mesh.", "NS", EXCLUSIVE_CLIENT): ("NOERROR", ["ns.mesh."], None),
    ("ns.mesh.", "A", EXCLUSIVE_CLIENT): ("NOERROR", [str(NS_ADDRESS)], None),
    ("svc.mesh.local.", "SOA", EXCLUSIVE_CLIENT): ("NOERROR", [SOA], None),
    ("redis.svc.mesh.local.", "A", EXCLUSIVE_CLIENT): ("NXDOMAIN", [], "svc.mesh.local."),
    # A mesh's destinations are its clients' only.
    ("legacy.svc.mesh.local.", "A", OUTSIDER): ("NXDOMAIN", [], "svc.mesh.local."),
    ("0a010005.addr.mesh.", "A", OUTSIDER): ("NXDOMAIN", [], "mesh."),
}


@pytest.mark.parametrize(("name", "rdtype", "client"), list(CASES))
def test_names(handler, name, rdtype, client):
    expected_rcode, expected_answer, soa_zone = CASES[(name, rdtype, client)]
    reply = ask(handler, name, rdtype, client=client)
    assert rcode(reply) == expected_rcode
    assert sorted(rdatas(reply.answer)) == sorted(expected_answer)
    if expected_rcode != "REFUSED":
        assert "AA" in flags(reply)
        assert {rrset.name.to_text() for rrset in reply.answer} <= {name}
    if soa_zone is not None:
        assert owners(reply.authority) == [soa_zone]
        assert rdatas(reply.authority) == [SOA]
    else:
        assert reply.authority == []


def test_ttls(handler):
    assert ask(handler, "redis.svc.mesh.local.").answer[0].ttl == config().ttl
    srv = ask(handler, "_6379._tcp.redis.svc.mesh.local.", "SRV")
    assert {rrset.ttl for rrset in srv.answer + srv.additional} == {config().endpoints_ttl}
    ptr = ask(handler, "1.0.0.241.in-addr.arpa.", "PTR")
    assert ptr.answer[0].ttl == config().ttl


def test_srv_carries_the_addresses_of_its_targets(handler):
    reply = ask(handler, "_6379._tcp.redis.svc.mesh.local.", "SRV")
    additional = {rrset.name.to_text(): rdatas([rrset]) for rrset in reply.additional}
    assert additional == {
        "0a000005.addr.mesh.": ["10.0.0.5"],
        "0a000007.addr.mesh.": ["10.0.0.7"],
    }
    named = ask(handler, "_443._tcp.httpbin.extsvc.mesh.local.", "SRV")
    assert owners(named.additional) == ["01020304.addr.mesh."]


def test_the_ns_of_a_hostname_zone_has_its_glue(handler):
    reply = ask(handler, "svc.mesh.local.", "NS")
    assert rdatas(reply.additional) == [str(NS_ADDRESS)]


def test_transfers_are_of_the_legacy_zone_only(handler):
    reply = ask(handler, "svc.mesh.local.", "AXFR", client=TRANSFER_CLIENT, tcp=True)
    assert rcode(reply) == "REFUSED"
    transfer = handler.handle(query("mesh.", "AXFR"), TRANSFER_CLIENT, tcp=True)
    assert transfer is not None and not isinstance(transfer, bytes)
    owners_sent = {b".".join(record.owner) for record in zone_records(handler.transfer_zone())}
    # The destinations' .addr names are in mesh.; their hostnames are in other zones.
    assert b"0a000005.addr.mesh" in owners_sent
    assert b"f1000001.addr.mesh" in owners_sent
    assert not any(owner.endswith(b"mesh.local") for owner in owners_sent)


def test_the_answer_cache_repeats_the_full_path(handler):
    for name, rdtype, client in CASES:
        first = handler.handle(query(name, rdtype), client)
        again = handler.handle(query(name, rdtype), client)
        assert isinstance(first, bytes) and isinstance(again, bytes)
        if rdtype != "SRV":  # SRV answers rotate
            assert again == first, name


def hostnames_in_legacy_zone() -> Snapshot:
    """A generator whose hostnames are under --domain (`{{ .DisplayName }}.mesh`)."""
    both = mesh(
        "default",
        service("redis", "240.0.0.1"),
        destinations=(
            destination("redis", ("redis.mesh",), "241.0.0.1"),
            destination("cache", ("cache.mesh", "x.y.mesh"), "241.0.0.2"),
        ),
    )
    exclusive = replace(
        mesh("exclusive", destinations=(destination("redis", ("redis.mesh",), "241.1.0.1"),)),
        legacy_names=False,
    )
    return snapshot(
        both, exclusive, clients={str(EXCLUSIVE_CLIENT): "exclusive"}, hostname_zones=("mesh",)
    )


def test_hostnames_under_the_domain_answer_beside_legacy_names():
    handler = Handler(config(), hostnames_in_legacy_zone())
    # A legacy name wins over a destination's of the same name.
    assert rdatas(ask(handler, "redis.mesh.").answer) == ["240.0.0.1"]
    assert rdatas(ask(handler, "cache.mesh.").answer) == ["241.0.0.2"]
    assert rdatas(ask(handler, "x.y.mesh.").answer) == ["241.0.0.2"]
    assert rcode(ask(handler, "y.mesh.")) == "NOERROR"
    assert rdatas(ask(handler, "redis.mesh.", client=EXCLUSIVE_CLIENT).answer) == ["241.1.0.1"]
    owners_sent = {b".".join(record.owner) for record in zone_records(handler.transfer_zone())}
    assert {b"cache.mesh", b"x.y.mesh", b"f1000002.addr.mesh"} <= owners_sent


def test_a_hostname_zone_inside_the_domain_takes_its_names():
    handler = Handler(
        config(),
        snapshot(
            mesh(
                "default",
                service("svc", "240.0.0.1"),
                service("other", "240.0.0.2"),
                destinations=(destination("redis", ("redis.svc.mesh",), "241.0.0.1"),),
            ),
            hostname_zones=("svc.mesh",),
        ),
    )
    assert rdatas(ask(handler, "redis.svc.mesh.").answer) == ["241.0.0.1"]
    assert rdatas(ask(handler, "svc.mesh.", "SOA").answer) == [SOA]
    assert rdatas(ask(handler, "other.mesh.").answer) == ["240.0.0.2"]


def test_variants_of_a_mesh_answer_its_destinations():
    """A client answered from a cross-zone variant sees the mesh's destinations too."""
    base = destinations_snapshot()
    default = base.meshes["default"]
    remote = service("faraway", "240.0.0.40", endpoints=(endpoint("10.9.0.1", zone="zone-b"),))
    everyone = TrafficRule(sources=frozenset({"*"}), destinations=frozenset({"*"}))
    crossing = replace(
        default,
        mtls=True,
        remote=MappingProxyType({"faraway": remote}),
        permissions=(everyone,),
    )
    meshes = MappingProxyType({**base.meshes, "default": crossing})
    handler = Handler(config(), replace(base, meshes=meshes))
    assert rdatas(ask(handler, "faraway.mesh.").answer) == ["240.0.0.40"]
    assert rdatas(ask(handler, "redis.svc.mesh.local.").answer) == ["241.0.0.1"]


# Incremental updates: the same tables as a rebuild.


def with_destinations(base: Snapshot, mesh_name: str, *changes, drop=()) -> Snapshot:
    current = base.meshes[mesh_name]
    destinations = {k: v for k, v in current.destinations.items() if k not in drop}
    destinations.update({d.key: d for d in changes})
    meshes = dict(base.meshes)
    meshes[mesh_name] = replace(current, destinations=MappingProxyType(destinations))
    return replace(base, revision=base.revision + 1, meshes=MappingProxyType(meshes))


def with_mesh(base: Snapshot, view: MeshView) -> Snapshot:
    meshes = MappingProxyType({**base.meshes, view.name: view})
    return replace(base, revision=base.revision + 1, meshes=meshes)


BASE = destinations_snapshot()
MOVED_REDIS = destination(
    "redis", ("redis.svc.mesh.local",), "241.0.0.1", port("6379", 6379, endpoint("10.0.0.50"))
)
CHANGES = {
    "destination added": with_destinations(
        BASE, "default", destination("new", ("new.svc.mesh.local",), "241.0.0.50")
    ),
    "destination removed": with_destinations(BASE, "default", drop=("MeshService/redis",)),
    "endpoints changed": with_destinations(BASE, "default", MOVED_REDIS),
    "hostnames changed": with_destinations(
        BASE, "default", destination("web", ("web.mesh.local",), "241.0.0.2")
    ),
    "nested destination removed": with_destinations(BASE, "default", drop=("MeshService/nested",)),
    "collision winner removed": with_destinations(
        BASE, "default", drop=("MeshExternalService/clash",)
    ),
    "vip lost": with_destinations(
        BASE, "default", destination("redis", ("redis.svc.mesh.local",), None)
    ),
    "last destination of a mesh removed": with_destinations(
        BASE, "exclusive", drop=("MeshService/legacy",)
    ),
    "destination in another mesh": with_destinations(
        BASE, "exclusive", destination("more", ("more.svc.mesh.local",), "241.1.0.9")
    ),
    "hostname zones changed": replace(
        BASE, revision=BASE.revision + 1, hostname_zones=frozenset({"svc.mesh.local"})
    ),
    "legacy names switched on": with_mesh(BASE, replace(EXCLUSIVE, legacy_names=True)),
    "mesh with destinations added": with_mesh(
        BASE, mesh("third", destinations=(destination("x", ("x.svc.mesh.local",), "241.2.0.1"),))
    ),
    "nothing": replace(BASE, revision=BASE.revision + 1),
}


def delta_between(old: Snapshot, new: Snapshot) -> Delta:
    """What a change feed would report: the destinations, services and meshes that differ."""
    meshes = {
        name
        for name in old.meshes.keys() | new.meshes.keys()
        if name not in old.meshes
        or name not in new.meshes
        or old.meshes[name].legacy_names != new.meshes[name].legacy_names
    }
    services, destinations = set(), set()
    for name in (old.meshes.keys() & new.meshes.keys()) - meshes:
        before, after = old.meshes[name], new.meshes[name]
        for key in before.services.keys() | after.services.keys():
            if before.services.get(key) != after.services.get(key):
                services.add((name, key))
        for key in before.destinations.keys() | after.destinations.keys():
            if before.destinations.get(key) != after.destinations.get(key):
                destinations.add((name, key))
    return Delta(
        services=frozenset(services),
        meshes=frozenset(meshes),
        destinations=frozenset(destinations),
        hostname_zones=old.hostname_zones != new.hostname_zones,
    )


def tables(handler: Handler) -> dict:
    zones = handler.zones
    return {
        "soa": zones.soa,
        "origins": zones.hostname_origins,
        "meshes": {name: (dict(t.nodes), dict(t.addresses)) for name, t in zones.meshes.items()},
        "destinations": {
            name: (dict(t.nodes), {a: dict(uses) for a, uses in t.addresses.items()})
            for name, t in zones.destinations.items()
        },
    }


ASKED = [(name, rdtype, client) for name, rdtype, client in CASES if rdtype != "SRV"]


def answers(handler: Handler) -> list:
    return [
        (rcode(reply := ask(handler, name, rdtype, client=client)), sorted(rdatas(reply.answer)))
        for name, rdtype, client in ASKED
    ]


@pytest.mark.parametrize("change", list(CHANGES))
def test_incremental_update_equals_full_rebuild(change):
    new = CHANGES[change]
    for before, after in ((BASE, new), (new, BASE)):
        incremental = Handler(config(), before)
        incremental.update(after, delta_between(before, after))
        rebuilt = Handler(config(), after)
        assert tables(incremental) == tables(rebuilt), change
        assert answers(incremental) == answers(rebuilt), change


def test_a_chain_of_updates_stays_equal():
    handler = Handler(config(), BASE)
    previous = BASE
    for change in CHANGES.values():
        handler.update(change, delta_between(previous, change))
        previous = change
    assert tables(handler) == tables(Handler(config(), previous))


def test_a_changed_destination_leaves_other_meshes_alone():
    handler = Handler(config(), BASE)
    exclusive = handler.zones.destinations["exclusive"]
    legacy = handler.zones.meshes["default"]
    after = CHANGES["endpoints changed"]
    handler.update(after, delta_between(BASE, after))
    assert handler.zones.destinations["exclusive"] is exclusive
    assert handler.zones.meshes["default"] is legacy
    assert rdatas(ask(handler, "0a000032.addr.mesh.").answer) == ["10.0.0.50"]
    assert rcode(ask(handler, "0a000005.addr.mesh.")) == "NXDOMAIN"


def test_a_hostname_under_no_zone_is_logged_once(caplog):
    lonely = destination("lonely", ("lonely.nowhere.test",), "241.0.0.99")
    for _ in range(2):
        Handler(config(), snapshot(mesh("default", destinations=(lonely,)), hostname_zones=ZONES))
    logged = [record for record in caplog.records if "lonely.nowhere.test" in record.getMessage()]
    assert len(logged) == 1
