"""Hostnames from HostnameGenerators, as Kuma's generator gives them: Kuma's default
generators, template fields and the label function, TemplateError and Collision
conditions, the order generators and resources are taken in, and the DNS zones the names
fall under."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from registry.meshservice.hostnames import Condition, Naming, assign_hostnames, hostname_zones
from registry.meshservice.states import (
    ExternalServiceState,
    GeneratorState,
    MeshServiceState,
    Selector,
    ServiceState,
    frozen_labels,
)
from registry.meshservice.templates import parse
from registry.store import Store
from tests.factories import mesh
from tests.meshservice.meshtesting import external_service, loaded, mesh_service, put

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ZONE = {"kuma.io/origin": "zone"}


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def gen(
    name: str,
    template: str,
    kind: str = "MeshService",
    match: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    created: int = 0,
) -> GeneratorState:
    return GeneratorState(
        name, frozen_labels(labels), at(created), kind, frozen_labels(match), parse(template)
    )


def service(name: str, labels: dict[str, str] | None = None, created: int = 0) -> MeshServiceState:
    return MeshServiceState("default", name, frozen_labels(labels), at(created), Selector(), ())


def hostnames(namings: dict[str, Naming]) -> dict[str, tuple[str, ...]]:
    return {name: naming.hostnames for name, naming in namings.items()}


def conditions(namings: dict[str, Naming], name: str) -> list[Condition]:
    return list(namings[name].conditions)


LOCAL_MESH_SERVICE = gen(
    "local-universal-mesh-service", "{{ .DisplayName }}.svc.mesh.local", match=ZONE, labels=ZONE
)


def test_the_default_generator_names_this_zones_mesh_services_only():
    resources: list[ServiceState] = [
        service("redis", ZONE),
        service("web-hashed-1234", {**ZONE, "kuma.io/display-name": "web"}),
        service("synced", {"kuma.io/origin": "global"}),
        service("written"),  # no origin label: a standalone control plane adds it on PUT
    ]
    namings = assign_hostnames("MeshService", [LOCAL_MESH_SERVICE], resources, "default")
    assert hostnames(namings) == {
        "redis": ("redis.svc.mesh.local",),
        "web-hashed-1234": ("web.svc.mesh.local",),
    }
    assert conditions(namings, "redis") == [
        Condition("local-universal-mesh-service", "True", "Generated", "")
    ]


def test_a_generator_names_only_resources_of_its_kind():
    external = ExternalServiceState("default", "httpbin", frozen_labels(ZONE), T0, 443, "tcp", ())
    namings = assign_hostnames("MeshExternalService", [LOCAL_MESH_SERVICE], [external], "default")
    assert namings == {}


def test_template_fields_and_the_label_function():
    template = '{{ label "team" }}.{{ .DisplayName }}.{{ .Name }}.{{ .Mesh }}.{{ .Zone }}.local'
    resources = [
        service("pay-1", {"team": "payments", "kuma.io/display-name": "pay"}),
        service("remote", {"team": "ops", "kuma.io/zone": "east"}),
    ]
    namings = assign_hostnames("MeshService", [gen("g", template)], resources, "west")
    assert hostnames(namings) == {
        "pay-1": ("payments.pay.pay-1.default.west.local",),
        "remote": ("ops.remote.remote.default.east.local",),
    }


def test_a_template_that_fails_or_renders_no_dns_name_is_a_template_error():
    generators = [gen("team", '{{ label "team" }}.svc.mesh.local')]
    resources = [service("a"), service("b", {"team": "Team_B"}), service("c", {"team": "c"})]
    namings = assign_hostnames("MeshService", generators, resources, "default")
    assert hostnames(namings) == {"a": (), "b": (), "c": ("c.svc.mesh.local",)}
    assert conditions(namings, "a") == [
        Condition(
            "team",
            "False",
            "TemplateError",
            'pre evaluation of template with parameters failed with error="label team not found"',
        )
    ]
    (condition,) = conditions(namings, "b")
    assert (condition.status, condition.reason) == ("False", "TemplateError")
    assert condition.message.startswith(
        "generated hostname 'Team_B.svc.mesh.local' is not a valid DNS name"
    )


def test_the_older_resource_keeps_a_colliding_hostname():
    generators = [gen("by-app", '{{ label "app" }}.svc.mesh.local')]
    resources = [
        service("newer", {"app": "shop"}, created=20),
        service("older", {"app": "shop"}, created=10),
        service("b-same-time", {"app": "cart"}, created=30),
        service("a-same-time", {"app": "cart"}, created=30),
    ]
    namings = assign_hostnames("MeshService", generators, resources, "default")
    assert hostnames(namings) == {
        "older": ("shop.svc.mesh.local",),
        "newer": (),
        "a-same-time": ("cart.svc.mesh.local",),
        "b-same-time": (),
    }
    # Kuma's message names the resource that did not get the name.
    assert conditions(namings, "newer") == [
        Condition("by-app", "False", "Collision", "Hostname collision with MeshService: newer")
    ]


def test_generators_of_origin_zone_go_first_then_older_then_by_name():
    """Two generators give two services each other's names: the one taken first wins."""
    resources = [service("api", {"app": "web"}), service("web", {"app": "api"})]
    by_label = '{{ label "app" }}.x.mesh.local'
    by_name = "{{ .Name }}.x.mesh.local"

    def winner(*generators: GeneratorState) -> str:
        namings = assign_hostnames("MeshService", generators, resources, "default")
        (address,) = namings["api"].addresses
        return address[1]

    # Origin zone first, though newer and later by name.
    assert winner(gen("z-label", by_label, labels=ZONE, created=9), gen("a-name", by_name)) == (
        "z-label"
    )
    # Else the older.
    assert winner(gen("z-label", by_label, created=1), gen("a-name", by_name, created=2)) == (
        "z-label"
    )
    # Else by name.
    assert winner(gen("z-label", by_label), gen("a-name", by_name)) == "a-name"


def test_one_resource_may_take_the_same_hostname_from_two_generators():
    generators = [
        gen("one", "{{ .Name }}.svc.mesh.local"),
        gen("two", "{{ .Name }}.svc.mesh.local"),
    ]
    namings = assign_hostnames("MeshService", generators, [service("redis")], "default")
    assert namings["redis"].addresses == (
        ("redis.svc.mesh.local", "one"),
        ("redis.svc.mesh.local", "two"),
    )
    assert namings["redis"].hostnames == ("redis.svc.mesh.local",)
    assert [c.reason for c in namings["redis"].conditions] == ["Generated", "Generated"]


def test_hostname_zones_are_the_templates_static_suffixes():
    generators = [
        LOCAL_MESH_SERVICE,
        gen("corp", "{{ .Name }}.internal.corp"),
        gen("tail", "svc-{{ .Name }}"),  # ends with an action: no zone
        gen("inside", "{{ .Name }}-svc.example"),  # the action is inside the first label
    ]
    assert hostname_zones(generators) == {"svc.mesh.local", "mesh.local", "internal.corp"}
    assert hostname_zones([gen("corp", "{{ .Name }}.internal.corp")]) == {"internal.corp"}


async def test_names_are_unique_per_mesh_and_kind_not_across_them(store: Store):
    """The same name in two meshes, or for two kinds, is no collision."""
    await put(store, mesh(), mesh("other"))
    await store.ensure_hostname_generators()
    await put(
        store,
        {
            "type": "HostnameGenerator",
            "name": "flat-external",
            "labels": ZONE,
            "spec": {
                "selector": {"meshExternalService": {"matchLabels": ZONE}},
                "template": "{{ .DisplayName }}.svc.mesh.local",
            },
        },
        mesh_service("redis", 6379),
        mesh_service("redis", 6379, mesh="other"),
        external_service("redis", 6379, ("192.0.2.1", 6379)),
    )
    snapshot = (await loaded(store)).snapshot
    default = snapshot.meshes["default"].destinations
    assert default["MeshService/redis"].hostnames == ("redis.svc.mesh.local",)
    # By generator name, as Kuma lists a resource's addresses.
    assert default["MeshExternalService/redis"].hostnames == (
        "redis.svc.mesh.local",
        "redis.extsvc.mesh.local",
    )
    assert snapshot.meshes["other"].destinations["MeshService/redis"].hostnames == (
        "redis.svc.mesh.local",
    )
