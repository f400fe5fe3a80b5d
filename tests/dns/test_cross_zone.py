"""Services of other zones: seen only by clients whose mesh has mTLS and whose services a
TrafficPermission lets reach them; then the VIP, the ingress as endpoints when no local
one is ready, and SRV at priority 1 (DESIGN, "Multi-zone")."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address
from types import MappingProxyType

import pytest

from dnsserver import Handler
from dnsserver.zonefile import zone_records
from registry.snapshot import Delta, Endpoint, MeshView, ServiceView, Snapshot, TrafficRule
from tests.dns.dnstesting import OUTSIDER, ask, query, rcode, rdatas, service, standard_config

LOCAL_ZONE = "zone-a"
WEB = ip_address("10.0.0.10")  # the dataplane of service web
DB = ip_address("10.0.0.20")  # the dataplane of service db
ALSO_WEB = ip_address("10.0.0.11")  # another dataplane of service web
INGRESS = ip_address("10.9.0.1")  # zone-b's ingress
INGRESS_PORT = 10001

EVERYONE = TrafficRule(sources=frozenset({"*"}), destinations=frozenset({"*"}))
FROM_WEB = TrafficRule(sources=frozenset({"web"}), destinations=frozenset({"*"}))


def local(address: str, *, ready: bool = True, zone: str | None = None) -> Endpoint:
    return Endpoint(
        dataplane=f"dp-{address}", address=ip_address(address), port=8080, ready=ready, zone=zone
    )


def through_ingress() -> tuple[Endpoint, ...]:
    return (Endpoint(dataplane="ingress-b", address=INGRESS, port=INGRESS_PORT, zone="zone-b"),)


def remote(name: str, vip: str) -> ServiceView:
    return service(name, vip, endpoints=through_ingress())


def cross_zone_snapshot(
    *,
    mtls: bool = True,
    permissions: tuple[TrafficRule, ...] = (EVERYONE,),
    both: ServiceView | None = None,
    remotes: tuple[ServiceView, ...] = (
        remote("faraway", "240.0.0.40"),
        remote("both", "240.0.0.30"),
    ),
    revision: int = 7,
) -> Snapshot:
    """Mesh default: web, db and both here; faraway and both offered by zone-b."""
    services = (
        service("web", "240.0.0.10", endpoints=(local("10.0.0.10"), local("10.0.0.11"))),
        service("db", "240.0.0.20", endpoints=(local("10.0.0.20"),)),
        both or service("both", "240.0.0.30", endpoints=(local("10.0.0.30"),)),
    )
    default = MeshView(
        name="default",
        mtls=mtls,
        services=MappingProxyType({s.name: s for s in services}),
        remote=MappingProxyType({s.name: s for s in remotes}),
        permissions=permissions,
    )
    return Snapshot(
        revision=revision,
        meshes=MappingProxyType({"default": default}),
        dataplane_meshes=MappingProxyType({WEB: "default", ALSO_WEB: "default", DB: "default"}),
        client_services=MappingProxyType(
            {WEB: frozenset({"web"}), ALSO_WEB: frozenset({"web"}), DB: frozenset({"db"})}
        ),
    )


def cross_zone_handler(**changes: object) -> Handler:
    return Handler(standard_config(local_zone=LOCAL_ZONE), cross_zone_snapshot(**changes))  # type: ignore[arg-type]


def answer(handler: Handler, name: str, rdtype: str = "A", client=WEB) -> tuple[str, list[str]]:
    reply = ask(handler, name, rdtype, client=client)
    return rcode(reply), sorted(rdatas(reply.answer))


REMOTE_SRV = f"1 1 {INGRESS_PORT} 0a090001.addr.mesh."


@pytest.mark.parametrize(
    ("snapshot_changes", "client", "seen"),
    [
        ({"mtls": False}, WEB, False),
        ({"permissions": ()}, WEB, False),
        ({}, WEB, True),
        ({}, DB, True),
        ({}, OUTSIDER, True),  # no dataplane: only "*" sources match, and this is one
        ({"permissions": (FROM_WEB,)}, WEB, True),
        ({"permissions": (FROM_WEB,)}, ALSO_WEB, True),
        ({"permissions": (FROM_WEB,)}, DB, False),
        ({"permissions": (FROM_WEB,)}, OUTSIDER, False),
        # A rule for another destination lets nobody reach faraway.
        (
            {"permissions": (TrafficRule(frozenset({"*"}), frozenset({"db"})),)},
            WEB,
            False,
        ),
    ],
)
def test_who_sees_a_remote_only_service(snapshot_changes, client, seen):
    handler = cross_zone_handler(**snapshot_changes)
    names = [
        ("faraway.mesh.", "A", ["240.0.0.40"]),
        ("faraway.endpoints.mesh.", "A", [str(INGRESS)]),
        ("_faraway._tcp.mesh.", "SRV", [REMOTE_SRV]),
        ("0a090001.addr.mesh.", "A", [str(INGRESS)]),
        ("1.0.9.10.in-addr.arpa.", "PTR", ["both.mesh.", "faraway.mesh."]),
        ("40.0.0.240.in-addr.arpa.", "PTR", ["faraway.mesh."]),
    ]
    for name, rdtype, records in names:
        reply = ask(handler, name, rdtype, client=client)
        if seen:
            assert (rcode(reply), sorted(rdatas(reply.answer))) == ("NOERROR", records), name
        elif name.endswith(".arpa."):
            # Reverse names we do not hold are outside the zone: refused (no forwarding).
            assert rcode(reply) == "REFUSED", name
        else:
            assert (rcode(reply), rdatas(reply.answer)) == ("NXDOMAIN", []), name


def test_remote_srv_target_has_its_address_in_additional():
    reply = ask(cross_zone_handler(), "_faraway._tcp.mesh.", "SRV", client=WEB)
    assert rdatas(reply.answer) == [REMOTE_SRV]
    assert [rrset.name.to_text() for rrset in reply.additional] == ["0a090001.addr.mesh."]
    assert rdatas(reply.additional) == [str(INGRESS)]
    assert {rrset.ttl for rrset in reply.answer + reply.additional} == {5}


def test_clients_of_one_mesh_do_not_share_cached_answers():
    data = query("faraway.mesh.")
    for order in ((WEB, DB), (DB, WEB)):
        handler = cross_zone_handler(permissions=(FROM_WEB,))
        replies = {client: handler.handle(data, client) for client in order}
        replies_again = {client: handler.handle(data, client) for client in order}
        assert replies == replies_again
        assert len(handler.cache) == 2
        assert rcode_of(replies[WEB]) == "NOERROR"
        assert rcode_of(replies[DB]) == "NXDOMAIN"


def rcode_of(reply: object) -> str:
    assert isinstance(reply, bytes)
    return {0: "NOERROR", 3: "NXDOMAIN"}[reply[3] & 0x0F]


def test_clients_that_see_the_same_services_share_one_variant():
    zones = cross_zone_handler(permissions=(FROM_WEB,)).zones
    assert zones.client_zone(WEB) is zones.client_zone(ALSO_WEB)
    # Those who see no remote service get the mesh's own tables.
    assert zones.client_zone(DB).key == zones.client_zone(OUTSIDER).key == "default"
    assert zones.client_zone(WEB).key != "default"


@pytest.mark.parametrize(
    ("permissions", "name", "rdtype", "records"),
    [
        # Local endpoints ready: the ingress is not an endpoint, only an SRV fallback.
        ((EVERYONE,), "both.mesh.", "A", ["240.0.0.30"]),
        ((EVERYONE,), "both.endpoints.mesh.", "A", ["10.0.0.30"]),
        ((EVERYONE,), "_both._tcp.mesh.", "SRV", ["0 1 8080 0a00001e.addr.mesh.", REMOTE_SRV]),
        # Without permission: the local answers alone.
        ((), "both.endpoints.mesh.", "A", ["10.0.0.30"]),
        ((), "_both._tcp.mesh.", "SRV", ["0 1 8080 0a00001e.addr.mesh."]),
    ],
)
def test_a_service_both_local_and_remote(permissions, name, rdtype, records):
    handler = cross_zone_handler(permissions=permissions)
    assert answer(handler, name, rdtype) == ("NOERROR", records)


@pytest.mark.parametrize(
    ("endpoints", "addresses", "srv"),
    [
        # Nothing ready here: the endpoints are the ingress.
        ((local("10.0.0.30", ready=False),), [str(INGRESS)], [REMOTE_SRV]),
        # An endpoint labelled with this zone is a local one.
        (
            (local("10.0.0.30", zone=LOCAL_ZONE),),
            ["10.0.0.30"],
            ["0 1 8080 0a00001e.addr.mesh.", REMOTE_SRV],
        ),
        # One labelled with another zone is a remote one, even in the local view.
        (
            (local("10.0.0.30", zone="zone-c"),),
            ["10.0.0.30", str(INGRESS)],
            [REMOTE_SRV, "1 1 8080 0a00001e.addr.mesh."],
        ),
    ],
)
def test_local_endpoints_first_else_the_ingress(endpoints, addresses, srv):
    both = service("both", "240.0.0.30", endpoints=endpoints)
    handler = cross_zone_handler(both=both)
    assert answer(handler, "both.endpoints.mesh.") == ("NOERROR", addresses)
    assert answer(handler, "_both._tcp.mesh.", "SRV") == ("NOERROR", sorted(srv))


def test_no_ready_local_endpoint_and_no_permission_is_empty():
    both = service("both", "240.0.0.30", endpoints=(local("10.0.0.30", ready=False),))
    handler = cross_zone_handler(both=both, permissions=())
    assert answer(handler, "both.endpoints.mesh.") == ("NOERROR", [])
    assert answer(handler, "_both._tcp.mesh.", "SRV") == ("NOERROR", [])


QUESTIONS = [
    ("faraway.mesh.", "A"),
    ("faraway.endpoints.mesh.", "A"),
    ("_faraway._tcp.mesh.", "SRV"),
    ("both.endpoints.mesh.", "A"),
    ("_both._tcp.mesh.", "SRV"),
    ("0a090001.addr.mesh.", "A"),
    ("1.0.9.10.in-addr.arpa.", "PTR"),
    ("mesh.", "SOA"),
]


def all_answers(handler: Handler) -> dict:
    return {
        (client, name, rdtype): answer(handler, name, rdtype, client)
        for client in (WEB, DB, OUTSIDER)
        for name, rdtype in QUESTIONS
    }


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # A remote service appears.
        ({"remotes": ()}, {}),
        # It goes away.
        ({}, {"remotes": ()}),
        # The permissions change.
        ({"permissions": (FROM_WEB,)}, {}),
        ({}, {"permissions": ()}),
    ],
)
def test_a_remote_only_delta_answers_as_a_full_rebuild(before, after):
    config = standard_config(local_zone=LOCAL_ZONE)
    old = cross_zone_snapshot(**before)
    new = cross_zone_snapshot(**after, revision=8)
    incremental = Handler(config, old)
    all_answers(incremental)  # warm the caches of the old generation
    incremental.update(new, Delta(remote=frozenset({"default"})))
    assert all_answers(incremental) == all_answers(Handler(config, new))


def test_a_remote_only_delta_redoes_no_mesh_tables():
    config = standard_config(local_zone=LOCAL_ZONE)
    handler = Handler(config, cross_zone_snapshot(remotes=()))
    tables = handler.zones.meshes["default"]
    handler.update(cross_zone_snapshot(revision=8), Delta(remote=frozenset({"default"})))
    assert handler.zones.meshes["default"] is tables
    assert answer(handler, "faraway.mesh.") == ("NOERROR", ["240.0.0.40"])


def test_transfers_send_the_mesh_without_remote_services():
    handler = cross_zone_handler()
    owners = {record.owner for record in zone_records(handler.transfer_zone())}
    assert (b"faraway",) + handler.zones.origin not in owners
    assert (b"both", b"endpoints") + handler.zones.origin in owners
    assert (b"0a090001", b"addr") + handler.zones.origin not in owners


def test_meshes_without_remote_services_keep_the_mesh_tables():
    handler = cross_zone_handler(remotes=())
    zone = handler.zones.client_zone(WEB)
    assert zone.key == "default"
    assert zone.zone.nodes is handler.zones.meshes["default"].nodes


def test_replaced_snapshot_keeps_no_variant():
    handler = cross_zone_handler()
    assert answer(handler, "faraway.mesh.") == ("NOERROR", ["240.0.0.40"])
    handler.update(replace(cross_zone_snapshot(), revision=9, meshes=MappingProxyType({})))
    assert answer(handler, "faraway.mesh.")[0] == "NXDOMAIN"
