"""The change feed: every change exactly once, in revision order, and readers that follow it."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import text

from registry.errors import NotFound
from registry.feed.backoff import FIRST_DELAY, MAX_DELAY, Backoff
from registry.feed.changes import read_changes
from registry.feed.follower import RegistryFollower
from registry.feed.states import Change
from registry.feed.view import RegistryView
from registry.meshservice.status import status_of
from registry.schema import ZoneIngress, parse_resource
from registry.snapshot import Delta, Snapshot
from registry.store import Store
from registry.store.database import create_engine
from tests.factories import dataplane, inbound
from tests.meshservice.meshtesting import (
    external_service,
    generator,
    mesh_service,
    multizone_service,
)
from tests.registry.registrytesting import mesh, registered_dataplane
from tests.serve_settings import vip_settings


def comparable(snapshot: Snapshot) -> tuple:
    """A snapshot as plain values, to compare one built from deltas with one loaded whole."""
    return (
        {
            name: (view.mtls, {service: s for service, s in view.services.items()})
            for name, view in snapshot.meshes.items()
        },
        dict(snapshot.dataplane_meshes),
    )


async def all_changes(store: Store) -> list[Change]:
    async with store.engine.connect() as connection:
        return await read_changes(connection, 0, 1_000_000)


async def test_changes_carry_tombstones_in_revision_order(store: Store):
    await store.put_many([mesh(), mesh("other")])
    await store.put_many(
        [
            registered_dataplane("web-1"),
            registered_dataplane("db-1", mesh="other"),
        ]
    )
    await store.delete_dataplane("default", "web-1")
    await store.delete_mesh("other")

    changes = await all_changes(store)
    assert [(c.revision, c.kind, c.mesh, c.name, c.deleted) for c in changes] == [
        (1, "Mesh", "default", "default", False),
        (2, "Mesh", "other", "other", False),
        (3, "Dataplane", "default", "web-1", False),
        (4, "Dataplane", "other", "db-1", False),
        (5, "Dataplane", "default", "web-1", True),
        # Deleting a mesh leaves a tombstone for each of its dataplanes, then its own.
        (6, "Dataplane", "other", "db-1", True),
        (7, "Mesh", "other", "other", True),
    ]
    assert await store.revision() == 7


async def test_follower_applies_deltas_equal_to_a_full_load(store: Store):
    published: list[tuple[Snapshot, Delta | None]] = []
    follower = RegistryFollower(store, lambda s, d: published.append((s, d)))
    await store.put(mesh())
    await follower.catch_up()
    assert published[-1][1] is None  # the cold start: a whole snapshot, no delta

    rng = random.Random(7)
    for step in range(60):
        name = f"dp-{rng.randrange(12)}"
        service = f"svc-{rng.randrange(4)}"
        action = rng.random()
        if action < 0.2:
            try:
                await store.delete_dataplane("default", name)
            except Exception:
                continue
        elif action < 0.25:
            await store.put(mesh("default", mtls=step % 2 == 0))
        else:
            address = f"10.0.{rng.randrange(3)}.{rng.randrange(1, 5)}"
            await store.put(registered_dataplane(name, address, service, ready=rng.random() < 0.8))
        await follower.catch_up()
        assert follower.revision == await store.revision()
        assert comparable(follower.view.snapshot) == comparable(await store.load_snapshot())

    deltas = [delta for _, delta in published[1:]]
    assert all(delta for delta in deltas)
    assert any(delta.services for delta in deltas)


def ingress(name: str, *services: str, zone: str = "east") -> ZoneIngress:
    """A zone ingress of another zone, offering `services` of mesh default."""
    resource = parse_resource(
        {
            "type": "ZoneIngress",
            "name": name,
            "zone": zone,
            "networking": {"address": "10.1.0.1", "port": 10001},
            "availableServices": [
                {"tags": {"kuma.io/service": service}, "instances": 1, "mesh": "default"}
                for service in services
            ],
        }
    )
    assert isinstance(resource, ZoneIngress)
    return resource


async def test_follower_lets_go_of_the_vips_the_store_quarantines(store: Store):
    """Services move between dataplanes and ingresses: the follower's view ends with the
    VIPs (and remote services) a full load has, though a batch reads only the VIPs of
    what is served or offered now."""
    follower = RegistryFollower(store, lambda s, d: None)
    await store.put(mesh())
    await follower.catch_up()
    rng = random.Random(11)
    for _ in range(60):
        action = rng.random()
        if action < 0.3:
            offered = rng.sample(["a", "b", "c", "d"], rng.randrange(3))
            await store.put(ingress(f"in-{rng.randrange(2)}", *offered))
        elif action < 0.4:
            try:
                await store.delete_resource("ZoneIngress", "", f"in-{rng.randrange(2)}")
            except Exception:
                continue
        elif action < 0.55:
            try:
                await store.delete_dataplane("default", f"dp-{rng.randrange(4)}")
            except Exception:
                continue
        else:
            name = f"dp-{rng.randrange(4)}"
            service = rng.choice(["a", "b", "c", "d"])
            await store.put(registered_dataplane(name, f"10.0.0.{rng.randrange(1, 5)}", service))
        await follower.catch_up()
        fresh = RegistryView()
        fresh.apply_batch(await store.read_all())
        assert follower.view._vips == fresh._vips
        assert follower.view.snapshot.meshes == fresh.snapshot.meshes


def test_backoff_doubles_up_to_its_most_and_starts_again_after_a_success():
    backoff = Backoff()
    delays = [backoff.next() for _ in range(10)]
    assert delays[:3] == [FIRST_DELAY, FIRST_DELAY * 2, FIRST_DELAY * 4]
    assert delays[-1] == MAX_DELAY and max(delays) == MAX_DELAY
    backoff.reset()
    assert backoff.next() == FIRST_DELAY


async def test_a_delta_names_only_what_changed(store: Store):
    published: list[tuple[Snapshot, Delta | None]] = []
    follower = RegistryFollower(store, lambda s, d: published.append((s, d)))
    await store.put_many(
        [
            mesh(),
            registered_dataplane("a-1"),
            registered_dataplane("b-1", "10.0.0.2", "b"),
        ]
    )
    await follower.catch_up()
    before = follower.view.snapshot

    await store.put(registered_dataplane("a-2", "10.0.0.3", "a"))
    await follower.catch_up()
    snapshot, delta = published[-1]
    assert delta == Delta(services=frozenset({("default", "a")}), clients=True)
    # What did not change is shared, not copied; the old snapshot is untouched.
    assert snapshot.meshes["default"].services["b"] is before.meshes["default"].services["b"]
    assert len(before.meshes["default"].services["a"].endpoints) == 1
    assert len(snapshot.meshes["default"].services["a"].endpoints) == 2


@pytest.mark.postgres
async def test_eight_writers_and_a_reader_see_every_change_once_in_order(postgres_database_url):
    """Acceptance: concurrent writers; the reader sees each change once, in order, and
    its snapshot ends equal to the database."""
    writers = [Store(create_engine(postgres_database_url), vip_settings()) for _ in range(8)]
    reader_store = Store(create_engine(postgres_database_url), vip_settings())
    await writers[0].put(mesh())
    follower = RegistryFollower(reader_store, lambda s, d: None, poll_interval=0.01)
    await follower.catch_up()
    seen: list[int] = []
    done = asyncio.Event()

    async def read_feed() -> None:
        cursor = 0
        async with reader_store.engine.connect() as connection:
            while True:
                finished = done.is_set()
                async with connection.begin():
                    changes = await read_changes(connection, cursor, 1000)
                for change in changes:
                    seen.append(change.revision)
                    cursor = change.revision
                await follower.catch_up()
                if finished and not changes:
                    return

    async def write(index: int, store: Store) -> int:
        rng = random.Random(index)
        written = 0
        for step in range(40):
            name = f"w{index}-{rng.randrange(6)}"
            if rng.random() < 0.25:
                try:
                    await store.delete_dataplane("default", name)
                except Exception:
                    continue
                written += 1
            else:
                address = f"10.{index}.{step % 5}.{rng.randrange(1, 9)}"
                await store.put(registered_dataplane(name, address, f"svc-{rng.randrange(5)}"))
                written += 1
        return written

    reader = asyncio.create_task(read_feed())
    try:
        counts = await asyncio.gather(*(write(i, s) for i, s in enumerate(writers)))
        done.set()
        await asyncio.wait_for(reader, 60)
        total = 1 + sum(counts)
        assert seen == list(range(1, total + 1))
        assert follower.revision == total
        assert comparable(follower.view.snapshot) == comparable(await reader_store.load_snapshot())
    finally:
        for store in [*writers, reader_store]:
            await store.engine.dispose()


async def _waiting_on_a_lock(connection, expected: int) -> None:
    """Return once `expected` other sessions wait on a lock: a real, observed interleaving."""
    for _ in range(500):
        waiting = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        )
        # pg_stat_activity is a snapshot taken once per transaction: end it to look again.
        await connection.rollback()
        if waiting >= expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second writer never waited on the first")


@pytest.mark.postgres
async def test_naive_sequence_feed_loses_a_change_to_commit_order(postgres_database_url):
    """The hazard is real: with revisions from a sequence, a reader skips a late commit."""
    engine = create_engine(postgres_database_url)
    try:
        async with engine.begin() as setup:
            await setup.execute(text("CREATE TABLE naive_feed (revision bigserial PRIMARY KEY)"))
        async with (
            engine.connect() as first,
            engine.connect() as second,
            engine.connect() as reader,
        ):
            await first.execute(text("INSERT INTO naive_feed DEFAULT VALUES"))  # gets 1
            await second.execute(text("INSERT INTO naive_feed DEFAULT VALUES"))  # gets 2
            await second.commit()
            visible = (await reader.execute(text("SELECT revision FROM naive_feed"))).scalars()
            cursor = max(visible)
            await reader.commit()
            await first.commit()
            later = await reader.execute(
                text("SELECT revision FROM naive_feed WHERE revision > :r"), {"r": cursor}
            )
            assert cursor == 2
            assert list(later.scalars()) == []  # revision 1 committed, and was never read
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_registry_feed_makes_the_late_commit_impossible(postgres_database_url):
    """The same interleaving against the registry: the second writer must wait for the
    first to commit, so the reader can never see revision 2 before revision 1."""
    store = Store(create_engine(postgres_database_url), vip_settings())
    observer = create_engine(postgres_database_url)
    try:
        await store.put(mesh())
        base = await store.revision()
        first_open = asyncio.Event()
        release_first = asyncio.Event()

        async def first_writer() -> None:
            async with store.writing() as transaction:  # held open on purpose
                transaction.record("Dataplane", "default", "first")
                first_open.set()
                await release_first.wait()

        first = asyncio.create_task(first_writer())
        await first_open.wait()
        second = asyncio.create_task(store.put(registered_dataplane("second", "10.0.0.1", "web")))
        async with observer.connect() as connection:
            await _waiting_on_a_lock(connection, 1)
            assert not second.done()
            assert await read_changes(connection, base, 100) == []
            await connection.rollback()
            release_first.set()
            await asyncio.wait_for(asyncio.gather(first, second), 10)
            changes = await read_changes(connection, base, 100)
        assert [(c.revision, c.name) for c in changes] == [
            (base + 1, "first"),
            (base + 2, "second"),
        ]
    finally:
        await store.engine.dispose()
        await observer.dispose()


def destinations_and_status(view: RegistryView) -> tuple:
    """Every mesh's destinations and every service-kind resource's status, as plain values."""
    snapshot = view.snapshot
    statuses = {
        (kind, mesh_name, name): status_of(view, kind, mesh_name, name)
        for mesh_name, mesh_view in snapshot.meshes.items()
        for key in mesh_view.destinations
        for kind, name in [key.split("/", 1)]
    }
    return (
        {name: (m.legacy_names, dict(m.destinations)) for name, m in snapshot.meshes.items()},
        snapshot.hostname_zones,
        statuses,
    )


SELECTORS: list[dict] = [
    {"dataplaneTags": {"kuma.io/service": "a"}},
    {"dataplaneTags": {"kuma.io/service": "b", "version": "v2"}},
    {"dataplaneTags": {"version": "v1"}},
    {"dataplaneRef": {"name": "dp-1"}},
    {"dataplaneLabels": {"matchLabels": {"tier": "front"}}},
]
TEMPLATES = [
    "{{ .DisplayName }}.svc.mesh.local",
    '{{ label "app" }}.svc.mesh.local',  # collides: several share an app
    "{{ .Name }}.{{ .Zone }}.zone.local",
    '{{ label "missing" }}.svc.mesh.local',
]


async def random_service_model_change(store: Store, rng: random.Random) -> None:
    """One write (or deletion) of a dataplane, a resource of Kuma's service model, or the
    mesh's meshServices.mode; NotFound when it deletes what is not there."""
    action = rng.random()
    name = rng.choice(["a", "b", "c", "d"])
    if action < 0.3:
        services = rng.sample(["a", "b", "c"], rng.randint(1, 2))
        inbounds = [
            inbound(
                service,
                rng.choice([80, 81]) + 10 * offset,
                tags={"version": rng.choice(["v1", "v2"])},
                ready=rng.random() < 0.8,
                **({"name": "http"} if rng.random() < 0.3 else {}),
            )
            for offset, service in enumerate(services)
        ]
        labels = {"tier": rng.choice(["front", "back"])} if rng.random() < 0.5 else None
        address = f"10.0.0.{rng.randrange(1, 6)}"
        document = dataplane(f"dp-{rng.randrange(5)}", address, inbounds=inbounds, labels=labels)
    elif action < 0.4:
        await store.delete_dataplane("default", f"dp-{rng.randrange(5)}")
        return
    elif action < 0.55:
        ports = rng.sample([80, {"name": "h", "port": 81, "targetPort": "http"}], rng.randint(1, 2))
        labels = {"app": rng.choice(["x", "y"])}
        if rng.random() < 0.1:
            labels["kuma.io/zone"] = "east"
        document = mesh_service(name, *ports, selector=rng.choice(SELECTORS), labels=labels)
    elif action < 0.62:
        await store.delete_resource("MeshService", "default", name)
        return
    elif action < 0.7:
        ports = [rng.choice([80, 81]), {"name": "h", "port": 8}]
        document = multizone_service(f"mz-{rng.randrange(2)}", {"app": "x"}, *ports)
    elif action < 0.75:
        address = rng.choice(["192.0.2.1", "db.example"])
        document = external_service(f"ext-{rng.randrange(2)}", 443, (address, 443))
    elif action < 0.78:
        kind, prefix = rng.choice([("MeshMultiZoneService", "mz"), ("MeshExternalService", "ext")])
        await store.delete_resource(kind, "default", f"{prefix}-{rng.randrange(2)}")
        return
    elif action < 0.9:
        selector = rng.choice(["meshService", "meshExternalService", "meshMultiZoneService"])
        labels = {"kuma.io/origin": "zone"} if rng.random() < 0.5 else None
        document = generator(
            f"gen-{rng.randrange(3)}", rng.choice(TEMPLATES), selector, labels=labels
        )
    elif action < 0.95:
        await store.delete_resource("HostnameGenerator", "", f"gen-{rng.randrange(3)}")
        return
    else:
        mode = rng.choice(["Disabled", "Exclusive", "Everywhere"])
        document = {"type": "Mesh", "name": "default", "meshServices": {"mode": mode}}
    await store.put(parse_resource(document))


async def test_destinations_from_deltas_equal_a_full_load(store: Store):
    """Dataplanes, MeshServices (every kind of selector), MeshExternalServices,
    MeshMultiZoneServices, HostnameGenerators (colliding ones among them) and mesh modes
    change at random: the follower's destinations, hostnames and statuses stay those of a
    full load, and each delta names every destination that differs."""
    published: list[tuple[Snapshot, Delta | None]] = []
    follower = RegistryFollower(store, lambda s, d: published.append((s, d)))
    await store.put(mesh())
    await follower.catch_up()
    rng = random.Random(16)
    for _ in range(150):
        try:
            await random_service_model_change(store, rng)
        except NotFound:
            continue
        before = follower.view.snapshot
        await follower.catch_up()
        fresh = RegistryView()
        fresh.apply_batch(await store.read_all())
        assert destinations_and_status(follower.view) == destinations_and_status(fresh)
        snapshot, delta = published[-1]
        if snapshot is before:
            continue
        assert delta is not None
        for mesh_name, mesh_view in snapshot.meshes.items():
            old = before.meshes[mesh_name].destinations if mesh_name in before.meshes else {}
            differing = {
                key
                for key in set(old) | set(mesh_view.destinations)
                if old.get(key) != mesh_view.destinations.get(key)
            }
            assert differing <= {key for m, key in delta.destinations if m == mesh_name}
        assert delta.hostname_zones == (before.hostname_zones != snapshot.hostname_zones)
    deltas = [delta for _, delta in published[1:] if delta is not None]
    assert any(delta.destinations for delta in deltas)
    assert any(delta.hostname_zones for delta in deltas)
