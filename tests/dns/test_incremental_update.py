"""Handler.update(snapshot, delta) redoes only what changed, with the same answers as a
full rebuild from the snapshot."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from dnsserver import Handler
from registry.snapshot import Delta, MeshView, Snapshot
from tests.dns.dnstesting import (
    OTHER_DATAPLANE,
    ask,
    endpoint,
    mesh,
    rdatas,
    service,
    snapshot,
    standard_config,
    standard_snapshot,
)


def delta_between(old: Snapshot, new: Snapshot) -> Delta:
    """What a change feed would report: the services and meshes that differ."""
    meshes = {
        name
        for name in old.meshes.keys() | new.meshes.keys()
        if name not in old.meshes
        or name not in new.meshes
        or old.meshes[name].mtls != new.meshes[name].mtls
    }
    services = set()
    for name in (old.meshes.keys() & new.meshes.keys()) - meshes:
        before, after = old.meshes[name].services, new.meshes[name].services
        for service_name in before.keys() | after.keys():
            if before.get(service_name) != after.get(service_name):
                services.add((name, service_name))
    return Delta(
        services=frozenset(services),
        meshes=frozenset(meshes),
        clients=dict(old.dataplane_meshes) != dict(new.dataplane_meshes),
    )


def with_services(base: Snapshot, mesh_name: str, *changes, drop=()) -> Snapshot:
    current = base.meshes[mesh_name]
    services = {k: v for k, v in current.services.items() if k not in drop}
    services.update({s.name: s for s in changes})
    meshes = dict(base.meshes)
    meshes[mesh_name] = MeshView(mesh_name, current.mtls, MappingProxyType(services))
    return replace(base, revision=base.revision + 1, meshes=MappingProxyType(meshes))


BASE = standard_snapshot()
CHANGES = {
    "service added": with_services(
        BASE, "default", service("new", "240.0.0.50", endpoints=(endpoint("10.0.0.1"),))
    ),
    "service removed": with_services(BASE, "default", drop=("backend",)),
    # Its alias's empty non-terminals (kuma-demo.svc.8080, svc.8080, 8080) go too.
    "aliased service removed": with_services(BASE, "default", drop=("backend_kuma-demo_svc_8080",)),
    "last services of a mesh removed": with_services(BASE, "other", drop=("web", "only-other")),
    "endpoint no longer ready": with_services(
        BASE,
        "default",
        service("backend", "240.0.0.1", endpoints=(endpoint("10.0.0.1", ready=False),)),
    ),
    "vip6 added": with_services(BASE, "default", service("backend", "240.0.0.1", "fd00::1")),
    "case collision added": with_services(BASE, "default", service("Web", "240.0.0.60")),
    "case collision winner removed": with_services(
        with_services(BASE, "default", service("Web", "240.0.0.60")), "default", drop=("Web",)
    ),
    "alias shadowed by a real name": with_services(
        BASE, "default", service("backend.kuma-demo", None)
    ),
    "alias target appears": with_services(BASE, "default", service("backend", "240.0.0.1")),
    "shared address loses a service": with_services(
        with_services(
            BASE, "default", service("twin", "240.0.0.70", endpoints=(endpoint("10.0.0.3"),))
        ),
        "default",
        drop=("twin",),
    ),
    "service named like a zone label": with_services(
        BASE, "default", service("endpoints", "240.0.0.80"), service("addr", "240.0.0.81")
    ),
    "service in another mesh": with_services(BASE, "other", service("web", "240.1.0.99")),
    "mesh added": replace(
        BASE,
        revision=BASE.revision + 1,
        meshes=MappingProxyType({**BASE.meshes, "third": mesh("third", service("x", "240.2.0.1"))}),
    ),
    "mesh removed": replace(
        BASE,
        revision=BASE.revision + 1,
        meshes=MappingProxyType({"default": BASE.meshes["default"]}),
    ),
    "mtls switched on": replace(
        BASE,
        revision=BASE.revision + 1,
        meshes=MappingProxyType({**BASE.meshes, "other": replace(BASE.meshes["other"], mtls=True)}),
    ),
    "clients moved": replace(
        BASE,
        revision=BASE.revision + 1,
        dataplane_meshes=MappingProxyType({OTHER_DATAPLANE: "default"}),
    ),
    "nothing": replace(BASE, revision=BASE.revision + 1),
}


def tables(handler: Handler) -> dict:
    zones = handler.zones
    return {
        "soa": zones.soa,
        "clients": dict(zones.client_meshes),
        "meshes": {
            name: (dict(tables.nodes), {a: dict(s) for a, s in tables.addresses.items()})
            for name, tables in zones.meshes.items()
        },
    }


@pytest.mark.parametrize("change", list(CHANGES))
def test_incremental_update_equals_full_rebuild(change):
    new = CHANGES[change]
    # From the base, and from the change back to the base: both directions of each kind.
    for before, after in ((BASE, new), (new, BASE)):
        incremental = Handler(standard_config(), before)
        incremental.update(after, delta_between(before, after))
        assert tables(incremental) == tables(Handler(standard_config(), after)), change


def test_a_chain_of_updates_stays_equal():
    handler = Handler(standard_config(), BASE)
    previous = BASE
    for change in CHANGES.values():
        handler.update(change, delta_between(previous, change))
        previous = change
    assert tables(handler) == tables(Handler(standard_config(), previous))


def test_update_answers_the_new_records():
    handler = Handler(standard_config(), BASE)
    after = CHANGES["service added"]
    handler.update(after, delta_between(BASE, after))
    assert rdatas(ask(handler, "new.mesh.").answer) == ["240.0.0.50"]
    assert rdatas(ask(handler, "1.0.0.10.in-addr.arpa.", "PTR").answer) == [
        "backend.mesh.",
        "new.mesh.",
    ]
    assert ask(handler, "mesh.", "SOA").answer[0][0].serial == after.revision


def test_untouched_meshes_are_shared_not_rebuilt():
    handler = Handler(standard_config(), BASE)
    other_before = handler.zones.meshes["other"]
    after = CHANGES["service added"]
    handler.update(after, delta_between(BASE, after))
    assert handler.zones.meshes["other"] is other_before


def test_delta_none_rebuilds_everything():
    handler = Handler(standard_config(), BASE)
    handler.update(snapshot(mesh("default", service("only", "240.0.0.9")), revision=99))
    assert rdatas(ask(handler, "only.mesh.").answer) == ["240.0.0.9"]
    assert list(handler.zones.meshes) == ["default"]
