"""MeshTrafficPermissions as DNS reads them: Kuma's documentation examples and others
turned into TrafficRules; a TrafficPermission and a MeshTrafficPermission both honoured;
followed incrementally as a full load reads them; and, end to end, what a dataplane's
reachableServices and reachableBackends let it resolve (real `meshdns serve`, real
`dig -b <its address>`)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from registry.documents import load_yaml_documents
from registry.feed.follower import RegistryFollower
from registry.feed.permission_reader import mesh_traffic_permission_rule
from registry.feed.view import RegistryView
from registry.schema import MeshTrafficPermission, ZoneIngress, parse_resource, parse_resources
from registry.snapshot import Client, Snapshot, TrafficRule
from registry.store import Store
from tests.helpers import Meshdns, dig, eventually
from tests.registry.registrytesting import mesh, registered_dataplane

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kuma"
ANY = frozenset({"*"})


def rule(sources: set[str], destinations: set[str]) -> TrafficRule:
    return TrafficRule(frozenset(sources), frozenset(destinations))


def example(name: str) -> MeshTrafficPermission:
    (document,) = load_yaml_documents((EXAMPLES / name).read_text())
    resource = parse_resource(document)
    assert isinstance(resource, MeshTrafficPermission)
    return resource


def permission(spec: dict[str, Any], name: str = "p") -> MeshTrafficPermission:
    resource = parse_resource(
        {"type": "MeshTrafficPermission", "name": name, "mesh": "default", "spec": spec}
    )
    assert isinstance(resource, MeshTrafficPermission)
    return resource


def allow(kind: str, action: str = "Allow", **ref: Any) -> dict[str, Any]:
    return {"targetRef": {"kind": kind, **ref}, "default": {"action": action}}


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        # Dataplanes by labels: the destination's dataplanes are in its zone, which a
        # zone's registry does not hold: any service.
        ("meshtrafficpermission-01-allow-orders-2.10plus.yaml", rule({"orders"}, {"*"})),
        # MeshSubset without kuma.io/service: any service.
        ("meshtrafficpermission-02-allow-orders-2.9.yaml", rule({"orders"}, {"*"})),
        ("meshtrafficpermission-03-deny-all.yaml", None),
        ("meshtrafficpermission-04-allow-all.yaml", rule({"*"}, {"*"})),
        # Allow by a tag other than kuma.io/service: any client; the Deny reveals nothing.
        ("meshtrafficpermission-05-tags.yaml", rule({"*"}, {"*"})),
        # The rules form: SPIFFE IDs, which no client address carries.
        ("meshtrafficpermission-06-rules-spiffe.yaml", None),
        ("meshtrafficpermission-07-rules-deny-ns-sectionname.yaml", None),
    ],
)
def test_kumas_examples_as_rules(file, expected):
    assert mesh_traffic_permission_rule(example(file)) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {
                "targetRef": {"kind": "MeshService", "name": "redis"},
                "from": [allow("MeshSubset", tags={"kuma.io/service": "web", "version": "v1"})],
            },
            rule({"web"}, {"redis"}),
        ),
        (
            {
                "targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/service": "redis"}},
                "from": [
                    allow("MeshService", name="web"),
                    allow("MeshServiceSubset", "AllowWithShadowDeny", name="api", tags={"v": "1"}),
                    allow("MeshSubset", "Deny", tags={"kuma.io/service": "db"}),
                ],
            },
            rule({"web", "api"}, {"redis"}),
        ),
        (
            {
                "targetRef": {"kind": "MeshServiceSubset", "name": "redis", "tags": {"v": "2"}},
                "from": [allow("Mesh")],
            },
            rule({"*"}, {"redis"}),
        ),
        # A MeshService by labels: which service it is cannot be told here.
        (
            {
                "targetRef": {"kind": "MeshService", "labels": {"app": "redis"}},
                "from": [allow("MeshSubset", tags={"kuma.io/service": "web"})],
            },
            rule({"web"}, {"*"}),
        ),
        ({"from": [allow("Mesh", "Deny")]}, None),
    ],
)
def test_permissions_as_rules(spec, expected):
    assert mesh_traffic_permission_rule(permission(spec)) == expected


# Both kinds honoured, read by the feed.

TRAFFIC_PERMISSION = {
    "type": "TrafficPermission",
    "mesh": "default",
    "name": "web-to-a",
    "sources": [{"match": {"kuma.io/service": "web"}}],
    "destinations": [{"match": {"kuma.io/service": "a"}}],
}


def web_to(service: str, name: str = "web-to-b") -> dict[str, Any]:
    return {
        "type": "MeshTrafficPermission",
        "mesh": "default",
        "name": name,
        "spec": {
            "targetRef": {"kind": "MeshService", "name": service},
            "from": [allow("MeshSubset", tags={"kuma.io/service": "web"})],
        },
    }


def ingress(*services: str) -> ZoneIngress:
    """zone-b's ingress offering `services` of mesh default."""
    resource = parse_resource(
        {
            "type": "ZoneIngress",
            "name": "ingress-b",
            "zone": "zone-b",
            "networking": {"address": "10.9.0.1", "port": 10001},
            "availableServices": [
                {"tags": {"kuma.io/service": service}, "instances": 1, "mesh": "default"}
                for service in services
            ],
        }
    )
    assert isinstance(resource, ZoneIngress)
    return resource


def remote_seen(snapshot: Snapshot, *services: str) -> set[str]:
    view = snapshot.meshes["default"]
    return set(view.sight(Client("default", frozenset(services))).remote)


async def full_load(store: Store, zone: str = "zone-a") -> RegistryView:
    view = RegistryView(zone)
    view.apply_batch(await store.read_all())
    return view


async def test_a_traffic_permission_and_a_mesh_traffic_permission_are_both_honoured(
    store: Store,
):
    await store.put_many([mesh(mtls=True), ingress("a", "b", "c")])
    await store.put_many(parse_resources([TRAFFIC_PERMISSION, web_to("b")]))
    view = await full_load(store)
    assert remote_seen(view.snapshot, "web") == {"a", "b"}
    assert remote_seen(view.snapshot, "db") == set()
    await store.delete_resource("MeshTrafficPermission", "default", "web-to-b")
    assert remote_seen((await full_load(store)).snapshot, "web") == {"a"}


async def test_permissions_and_reach_followed_as_a_full_load_reads_them(store: Store):
    """MeshTrafficPermissions, TrafficPermissions and dataplanes' reach change at random:
    the follower's snapshot keeps what a full load gives."""
    follower = RegistryFollower(store, lambda s, d: None)
    follower.view = RegistryView("zone-a")
    await store.put_many([mesh(mtls=True), ingress("a", "b", "c")])
    await follower.catch_up()
    rng = random.Random(16)
    reaches = [
        None,
        {"reachableServices": ["a"]},
        {"reachableServices": ["b", "c"]},
        {"reachableBackends": {"refs": [{"kind": "MeshService", "name": "b"}]}},
        {"reachableBackends": {}},
    ]
    reached = permitted = 0
    for _ in range(40):
        action = rng.random()
        if action < 0.3:
            await store.put_many(
                parse_resources([web_to(rng.choice("abc"), f"p-{rng.randrange(3)}")])
            )
        elif action < 0.4:
            try:
                await store.delete_resource(
                    "MeshTrafficPermission", "default", f"p-{rng.randrange(3)}"
                )
            except Exception:
                continue
        elif action < 0.45:
            await store.put_many(parse_resources([TRAFFIC_PERMISSION]))
        else:
            proxying = rng.choice(reaches)
            # Drawn in this order (name, service, address): the seed gives the same run.
            name, service = f"dp-{rng.randrange(4)}", rng.choice(["web", "db"])
            resource = registered_dataplane(name, f"10.0.0.{rng.randrange(1, 4)}", service)
            document = resource.dump()
            if proxying is not None:
                document["networking"]["transparentProxying"] = proxying
            await store.put_many(parse_resources([document]))
        await follower.catch_up()
        fresh = (await full_load(store)).snapshot
        followed = follower.view.snapshot
        assert set(followed.meshes["default"].permissions) == set(
            fresh.meshes["default"].permissions
        )
        assert dict(followed.client_reach) == dict(fresh.client_reach)
        assert dict(followed.client_services) == dict(fresh.client_services)
        reached += bool(fresh.client_reach)
        permitted += bool(fresh.meshes["default"].permissions)
    assert reached and permitted  # both were followed, not only their absence


# End to end: a real server, asked from each dataplane's own address.

REACHABLE = """
type: Mesh
name: default
meshServices:
  mode: Everywhere
---
type: Dataplane
mesh: default
name: redis-1
networking:
  address: 127.0.31.1
  inbound:
    - port: 6379
      tags:
        kuma.io/service: redis
---
type: Dataplane
mesh: default
name: db-1
networking:
  address: 127.0.31.2
  inbound:
    - port: 5432
      tags:
        kuma.io/service: db
---
type: Dataplane
mesh: default
name: only-services
networking:
  address: 127.0.31.3
  inbound:
    - port: 8080
      tags:
        kuma.io/service: web
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
    reachableServices:
      - redis
---
type: Dataplane
mesh: default
name: only-backends
networking:
  address: 127.0.31.4
  inbound:
    - port: 8081
      tags:
        kuma.io/service: api
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
    reachableBackends:
      refs:
        - kind: MeshService
          name: redis
          port: 6379
---
type: Dataplane
mesh: default
name: plain
networking:
  address: 127.0.31.5
  inbound:
    - port: 8082
      tags:
        kuma.io/service: shop
"""
ONLY_SERVICES, ONLY_BACKENDS, PLAIN = "127.0.31.3", "127.0.31.4", "127.0.31.5"


def answers(server: Meshdns, name: str, client: str, rdtype: str = "A") -> bool:
    output = dig(server.dns_port, "-b", client, "+norecurse", name, rdtype)
    assert "status: NOERROR" in output or "status: NXDOMAIN" in output, output
    return "status: NOERROR" in output and ";; ANSWER SECTION:" in output


@pytest.mark.integration
def test_a_dataplanes_reach_narrows_what_it_resolves(tmp_path: Path):
    server = Meshdns(database_url=f"sqlite+aiosqlite:///{tmp_path / 'meshdns.db'}", cwd=tmp_path)
    server.start()
    try:
        applied = server.cli("apply", "-f", "-", input=REACHABLE)
        assert applied.returncode == 0, applied.stderr
        # The generated MeshServices answer, for a dataplane that narrows nothing.
        for name in ("redis.svc.mesh.local", "db.svc.mesh.local"):
            eventually(lambda name=name: answers(server, name, PLAIN), f"{name} generated")
        names = [
            "redis.mesh",
            "db.mesh",
            "redis.svc.mesh.local",
            "db.svc.mesh.local",
            ("_6379._tcp.redis.svc.mesh.local", "SRV"),
        ]
        seen: dict[str, set[str]] = {}
        for client in (ONLY_SERVICES, ONLY_BACKENDS, PLAIN):
            seen[client] = set()
            for entry in names:
                name, rdtype = entry if isinstance(entry, tuple) else (entry, "A")
                if answers(server, name, client, rdtype):
                    seen[client].add(name)
        everything = {entry if isinstance(entry, str) else entry[0] for entry in names}
        assert seen[PLAIN] == everything
        # reachableServices: those legacy names, and no MeshService hostname at all.
        assert seen[ONLY_SERVICES] == {"redis.mesh"}
        # reachableBackends: the referenced MeshService's hostname (and its port's SRV);
        # its legacy names are not narrowed.
        assert seen[ONLY_BACKENDS] == {
            "redis.mesh",
            "db.mesh",
            "redis.svc.mesh.local",
            "_6379._tcp.redis.svc.mesh.local",
        }
    finally:
        server.stop()
