"""The view's Destinations: MeshService endpoints per port from the dataplanes it selects,
MeshExternalService endpoints and hosts, MeshMultiZoneService groups, their VIPs and
hostnames; Exclusive meshes; and the status GET renders from it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, ip_address

from registry.feed.follower import RegistryFollower
from registry.meshservice.status import status_of
from registry.snapshot import Destination, Endpoint
from registry.store import Store
from tests.factories import dataplane, inbound, mesh
from tests.meshservice.meshtesting import (
    external_service,
    generator,
    loaded,
    mesh_service,
    multizone_service,
    put,
)

MESH_SERVICES = IPv4Network("241.0.0.0/8")


def endpoints(destination: Destination, port: str) -> list[tuple[str, str, int, bool]]:
    found = next(p for p in destination.ports if p.name == port)
    return [(e.dataplane, str(e.address), e.port, e.serving) for e in found.endpoints]


async def test_a_mesh_service_has_its_vip_hostname_and_endpoints_per_port(store: Store):
    await put(store, mesh())
    await store.ensure_hostname_generators()
    await put(
        store,
        dataplane("redis-1", "10.0.0.1", inbounds=[inbound("redis", 6379), inbound("admin", 9000)]),
        dataplane("redis-2", "10.0.0.2", "redis", port=6379, advertisedAddress="192.0.2.2"),
        dataplane("redis-3", "10.0.0.3", "redis", port=6379, ready=False),
        mesh_service("redis", {"name": "main", "port": 6379}, {"port": 9000, "targetPort": 9000}),
    )
    view = await loaded(store)
    snapshot = view.snapshot
    redis = snapshot.meshes["default"].destinations["MeshService/redis"]
    assert redis.kind == "MeshService" and redis.name == "redis"
    assert redis.hostnames == ("redis.svc.mesh.local",)
    assert redis.vip in MESH_SERVICES
    assert redis.service == "redis" and redis.zone is None
    assert endpoints(redis, "main") == [
        ("redis-1", "10.0.0.1", 6379, True),
        ("redis-2", "192.0.2.2", 6379, True),  # the advertised address
        ("redis-3", "10.0.0.3", 6379, False),
    ]
    # A port may target any inbound of a selected dataplane.
    assert endpoints(redis, "9000") == [("redis-1", "10.0.0.1", 9000, True)]
    assert snapshot.hostname_zones == {"svc.mesh.local", "extsvc.mesh.local", "mesh.local"}
    assert snapshot.meshes["default"].legacy_names


async def test_ports_target_an_inbound_by_number_by_name_or_by_their_own_port(store: Store):
    await put(
        store,
        mesh(),
        dataplane(
            "api-1",
            "10.0.0.1",
            inbounds=[
                inbound("api", 8080, name="http"),
                inbound("api", 8443),
                inbound("api", 9090),
            ],
        ),
        mesh_service(
            "api",
            {"name": "web", "port": 80, "targetPort": "http"},
            {"port": 443, "targetPort": 8443},
            {"port": 9090},
            {"port": 7000, "targetPort": "nothing"},
        ),
    )
    api = (await loaded(store)).snapshot.meshes["default"].destinations["MeshService/api"]
    assert [(p.name, p.port) for p in api.ports] == [
        ("web", 80),
        ("443", 443),
        ("9090", 9090),
        ("7000", 7000),
    ]
    assert endpoints(api, "web") == [("api-1", "10.0.0.1", 8080, True)]
    assert endpoints(api, "443") == [("api-1", "10.0.0.1", 8443, True)]
    assert endpoints(api, "9090") == [("api-1", "10.0.0.1", 9090, True)]
    assert endpoints(api, "7000") == []


async def test_selectors_by_other_tags_by_name_and_by_labels_on_load_and_as_they_change(
    store: Store,
):
    """Tags other than kuma.io/service and labels are read only when a selector asks for
    them: a MeshService asking after the cold load still finds its dataplanes."""
    await put(
        store,
        mesh(),
        dataplane("web-1", "10.0.0.1", "web", port=80, tags={"version": "v1"}),
        dataplane(
            "web-2", "10.0.0.2", "web", port=80, tags={"version": "v2"}, labels={"tier": "a"}
        ),
        dataplane("web-3", "10.0.0.3", "web", port=80, tags={"version": "v2"}),
    )
    follower = RegistryFollower(store, lambda snapshot, delta: None)
    await follower.load()
    await put(
        store,
        mesh_service("v2", 80, selector={"dataplaneTags": {"version": "v2"}}),
        mesh_service(
            "web-v1", 80, selector={"dataplaneTags": {"kuma.io/service": "web", "version": "v1"}}
        ),
        mesh_service("one", 80, selector={"dataplaneRef": {"name": "web-3"}}),
        mesh_service("tier-a", 80, selector={"dataplaneLabels": {"matchLabels": {"tier": "a"}}}),
    )
    await follower.catch_up()
    selected = {
        "v2": ["web-2", "web-3"],
        "web-v1": ["web-1"],
        "one": ["web-3"],
        "tier-a": ["web-2"],
    }
    for view in (follower.view, await loaded(store)):
        destinations = view.snapshot.meshes["default"].destinations
        for name, names in selected.items():
            found = [e[0] for e in endpoints(destinations[f"MeshService/{name}"], "80")]
            assert found == names, name

    # A dataplane changes: the selections follow, as a full load has them.
    await put(
        store,
        dataplane(
            "web-1", "10.0.0.1", "web", port=80, tags={"version": "v2"}, labels={"tier": "a"}
        ),
    )
    await follower.catch_up()
    fresh = await loaded(store)
    assert follower.view.snapshot.meshes == fresh.snapshot.meshes
    destinations = fresh.snapshot.meshes["default"].destinations
    assert [e[0] for e in endpoints(destinations["MeshService/v2"], "80")] == [
        "web-1",
        "web-2",
        "web-3",
    ]
    assert endpoints(destinations["MeshService/web-v1"], "80") == []


async def test_an_external_service_answers_its_addresses_and_names(store: Store):
    await put(store, mesh())
    await store.ensure_hostname_generators()
    await put(
        store,
        external_service(
            "httpbin", 443, ("192.0.2.7", 8443), ("httpbin.org", 443), ("2001:db8::1", 443)
        ),
    )
    view = await loaded(store)
    httpbin = view.snapshot.meshes["default"].destinations["MeshExternalService/httpbin"]
    assert httpbin.hostnames == ("httpbin.extsvc.mesh.local",)
    assert httpbin.vip in IPv4Network("242.0.0.0/8")
    (port,) = httpbin.ports
    assert (port.name, port.port, port.app_protocol) == ("443", 443, "tcp")
    assert [(str(e.address), e.port) for e in port.endpoints] == [
        ("192.0.2.7", 8443),
        ("2001:db8::1", 443),
    ]
    assert port.hosts == (("httpbin.org", 443),)
    assert status_of(view, "MeshExternalService", "default", "httpbin") == {
        "vip": {"ip": str(httpbin.vip)},
        "addresses": [
            {
                "hostname": "httpbin.extsvc.mesh.local",
                "origin": "HostnameGenerator",
                "hostnameGeneratorRef": {"coreName": "local-mesh-external-service"},
            }
        ],
        "hostnameGenerators": [
            {
                "hostnameGeneratorRef": {"coreName": "local-mesh-external-service"},
                "conditions": [
                    {"type": "Generated", "status": "True", "reason": "Generated", "message": ""}
                ],
            }
        ],
    }


async def test_a_multizone_service_groups_the_mesh_services_its_labels_select(store: Store):
    await put(
        store,
        mesh(),
        mesh("other"),
        dataplane("redis-1", "10.0.0.1", inbounds=[inbound("redis", 6379, name="tcp")]),
        dataplane("cache-1", "10.0.0.2", "cache", port=6380),
        mesh_service("redis", {"name": "tcp", "port": 6379}, labels={"app": "redis"}),
        mesh_service("cache", {"port": 6380, "targetPort": 6380}, labels={"app": "redis"}),
        mesh_service("other", 6379, mesh="other", labels={"app": "redis"}),
        generator("mz", "{{ .Name }}.mzsvc.mesh.local", "meshMultiZoneService"),
        multizone_service("all-redis", {"app": "redis"}, {"name": "tcp", "port": 6379}, 6380),
    )
    follower = RegistryFollower(store, lambda snapshot, delta: None)
    await follower.load()
    group = follower.view.snapshot.meshes["default"].destinations["MeshMultiZoneService/all-redis"]
    assert group.hostnames == ("all-redis.mzsvc.mesh.local",)
    assert group.vip in IPv4Network("243.0.0.0/8")
    # Port "tcp" is redis's by name; port 6380 is cache's by number.
    assert endpoints(group, "tcp") == [("redis-1", "10.0.0.1", 6379, True)]
    assert endpoints(group, "6380") == [("cache-1", "10.0.0.2", 6380, True)]
    status = status_of(follower.view, "MeshMultiZoneService", "default", "all-redis")
    assert status is not None
    assert status["meshServices"] == [
        {"name": "cache", "namespace": "", "zone": "default", "mesh": "default"},
        {"name": "redis", "namespace": "", "zone": "default", "mesh": "default"},
    ]
    assert status["vips"] == [{"ip": str(group.vip)}]

    # A grouped MeshService's endpoints move, and one leaves the group: the group follows.
    await put(
        store,
        dataplane("redis-1", "10.0.0.9", inbounds=[inbound("redis", 6379, name="tcp")]),
        mesh_service("cache", {"port": 6380, "targetPort": 6380}, labels={"app": "cache"}),
    )
    await follower.catch_up()
    group = follower.view.snapshot.meshes["default"].destinations["MeshMultiZoneService/all-redis"]
    assert endpoints(group, "tcp") == [("redis-1", "10.0.0.9", 6379, True)]
    assert endpoints(group, "6380") == []
    assert follower.view.snapshot.meshes == (await loaded(store)).snapshot.meshes


async def test_an_exclusive_mesh_answers_no_legacy_names(store: Store):
    await put(
        store,
        mesh(meshServices={"mode": "Exclusive"}),
        mesh("both", meshServices={"mode": "Everywhere"}),
    )
    snapshot = (await loaded(store)).snapshot
    assert not snapshot.meshes["default"].legacy_names
    assert snapshot.meshes["both"].legacy_names


async def test_a_mesh_service_of_another_zone_selects_that_zones_dataplanes(store: Store):
    await put(
        store,
        mesh(),
        dataplane("redis-1", "10.0.0.1", "redis", port=6379),
        dataplane("redis-east", "10.1.0.1", "redis", port=6379, labels={"kuma.io/zone": "east"}),
        mesh_service("redis", 6379),
        mesh_service(
            "redis-east",
            6379,
            selector={"dataplaneTags": {"kuma.io/service": "redis"}},
            labels={"kuma.io/zone": "east"},
        ),
    )
    destinations = (await loaded(store)).snapshot.meshes["default"].destinations
    assert [e[0] for e in endpoints(destinations["MeshService/redis"], "6379")] == ["redis-1"]
    east = destinations["MeshService/redis-east"]
    assert east.zone == "east"
    assert east.ports[0].endpoints == (
        Endpoint("redis-east", ip_address("10.1.0.1"), 6379, zone="east"),
    )


async def test_the_status_of_a_mesh_service(store: Store):
    await put(store, mesh())
    await store.ensure_hostname_generators()
    await put(
        store,
        generator("broken", '{{ label "team" }}.svc.mesh.local'),
        generator("upper", '{{ label "owner" }}.svc.mesh.local', labels={"kuma.io/origin": "zone"}),
        dataplane("redis-1", "10.0.0.1", "redis", port=6379),
        dataplane("redis-2", "10.0.0.2", "redis", port=6379, ready=False),
        mesh_service("redis", 6379, labels={"owner": "Team_A"}),
    )
    view = await loaded(store)
    status = status_of(view, "MeshService", "default", "redis")
    vip = view.snapshot.meshes["default"].destinations["MeshService/redis"].vip
    assert isinstance(vip, IPv4Address)
    assert status == {
        "vips": [{"ip": str(vip)}],
        "addresses": [
            {
                "hostname": "redis.svc.mesh.local",
                "origin": "HostnameGenerator",
                "hostnameGeneratorRef": {"coreName": "local-universal-mesh-service"},
            }
        ],
        "hostnameGenerators": [
            {
                "hostnameGeneratorRef": {"coreName": "broken"},
                "conditions": [
                    {
                        "type": "Generated",
                        "status": "False",
                        "reason": "TemplateError",
                        "message": "pre evaluation of template with parameters failed with "
                        'error="label team not found"',
                    }
                ],
            },
            {
                "hostnameGeneratorRef": {"coreName": "local-universal-mesh-service"},
                "conditions": [
                    {"type": "Generated", "status": "True", "reason": "Generated", "message": ""}
                ],
            },
            {
                "hostnameGeneratorRef": {"coreName": "upper"},
                "conditions": [
                    {
                        "type": "Generated",
                        "status": "False",
                        "reason": "TemplateError",
                        "message": "generated hostname 'Team_A.svc.mesh.local' is not a valid "
                        "DNS name: a lowercase RFC 1123 subdomain must consist of lower case "
                        "alphanumeric characters, '-' or '.', and must start and end with an "
                        "alphanumeric character",
                    }
                ],
            },
        ],
        # redis-2 is not ready; neither has an agent, so both count as connected.
        "dataplaneProxies": {"connected": 2, "healthy": 1, "total": 2},
    }
    assert status_of(view, "MeshService", "default", "nothing") is None
    await put(store, mesh_service("idle", 7000))
    idle = status_of(await loaded(store), "MeshService", "default", "idle")
    assert idle is not None and idle["dataplaneProxies"] == {}
