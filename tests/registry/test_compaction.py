"""A bounded change log: compaction keeps a window, and a reader that falls behind it, or
whose database lost revisions it saw, reads the registry whole instead of missing
changes."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, update

from registry.errors import NotFound
from registry.feed.changes import FeedGap, read_changes
from registry.feed.compaction import Window, compact
from registry.feed.follower import RegistryFollower
from registry.models import ChangeRow, RegistryStateRow
from registry.schema import parse_resource
from registry.snapshot import Snapshot
from registry.store import Store
from tests.factories import dataplane, mesh


def answers(snapshot: Snapshot) -> dict:
    """What DNS answers from a snapshot: every service's VIP and endpoints, by mesh."""
    return {
        name: {service: (state.vip, state.endpoints) for service, state in view.services.items()}
        for name, view in snapshot.meshes.items()
    }


async def churn(store: Store, rng: random.Random, changes: int) -> None:
    """`changes` writes: dataplanes of 30 services registered, moved and deleted."""
    for _ in range(changes):
        name = f"dp-{rng.randrange(60)}"
        if rng.random() < 0.2:
            with contextlib.suppress(NotFound):
                await store.delete_dataplane("default", name)
        else:
            address = f"10.0.{rng.randrange(4)}.{rng.randrange(1, 200)}"
            service = f"svc-{rng.randrange(30)}"
            await store.put(parse_resource(dataplane(name, address, service)))


async def rows(store: Store) -> int:
    async with store.reading() as connection:
        return int(await connection.scalar(select(func.count()).select_from(ChangeRow)) or 0)


async def follower_of(store: Store) -> RegistryFollower:
    follower = RegistryFollower(store, lambda snapshot, delta: None)
    await follower.catch_up()
    return follower


async def test_compaction_keeps_the_window_and_a_late_reader_reloads(store: Store):
    await store.put(parse_resource(mesh()))
    rng = random.Random(5)
    steady = await follower_of(store)  # follows every change
    late = await follower_of(store)  # loaded at the start, then left behind
    await churn(store, rng, 300)
    await steady.catch_up()

    assert await compact(store, Window(revisions=50), datetime.now(UTC)) > 0
    assert await rows(store) == 50
    assert await compact(store, Window(revisions=50), datetime.now(UTC)) == 0

    # The late reader's cursor is behind the window: it reloads, it does not skip.
    assert late.revision is not None and late.revision < await store.revision() - 50
    await late.catch_up()
    assert late.reloads == {"compacted": 1}
    assert late.revision == await store.revision()
    # A reader that kept up follows on, and one started now loads: all three alike.
    await churn(store, rng, 30)
    await steady.catch_up()
    await late.catch_up()
    fresh = await follower_of(store)
    assert steady.reloads == {}
    assert answers(late.view.snapshot) == answers(steady.view.snapshot)
    assert answers(fresh.view.snapshot) == answers(steady.view.snapshot)
    assert answers(steady.view.snapshot)["default"]  # services there to compare


async def test_compaction_by_age_within_the_window(store: Store):
    await store.put(parse_resource(mesh()))
    await churn(store, random.Random(2), 40)
    # The first 30 changes are a day old.
    async with store.engine.begin() as connection:
        await connection.execute(
            update(ChangeRow)
            .where(ChangeRow.revision <= 30)
            .values(committed_at=datetime.now(UTC) - timedelta(days=1))
        )
    window = Window(revisions=1000, max_age=3600)
    assert await compact(store, window, datetime.now(UTC)) == 30
    async with store.reading() as connection:
        kept = await read_changes(connection, 30, 1000)
        assert kept[0].revision == 31 and len(kept) == await store.revision() - 30
        with pytest.raises(FeedGap) as gap:
            await read_changes(connection, 29, 1000)
    assert gap.value.reason == "compacted"


async def test_a_reader_ahead_of_the_database_reloads(store: Store):
    """The database lost the last revisions the reader saw (a failover to a standby that
    lagged, simulated by taking them out): the reader reloads what the database holds."""
    await store.put(parse_resource(mesh()))
    await churn(store, random.Random(3), 20)
    kept = await store.revision()
    reader = await follower_of(store)
    await store.put(parse_resource(dataplane("lost-1", "10.9.0.1", "lost")))
    await reader.catch_up()
    assert "lost" in reader.view.snapshot.meshes["default"].services

    await lose_revisions_after(store, kept)
    await reader.catch_up()
    assert reader.reloads == {"ahead": 1}
    assert reader.revision == kept
    assert "lost" not in reader.view.snapshot.meshes["default"].services
    assert answers(reader.view.snapshot) == answers((await follower_of(store)).view.snapshot)


async def test_a_reader_whose_revisions_were_numbered_again_reloads(store: Store):
    """The database lost revisions and went on writing new ones numbered alike, beyond
    the reader's cursor: the change at its cursor differs, so it reloads."""
    await store.put(parse_resource(mesh()))
    await churn(store, random.Random(4), 20)
    kept = await store.revision()
    reader = await follower_of(store)
    await store.put(parse_resource(dataplane("lost-1", "10.9.0.1", "lost")))
    await reader.catch_up()

    await lose_revisions_after(store, kept)
    for index in range(3):  # the new primary's own writes, numbered from kept + 1
        await store.put(parse_resource(dataplane(f"new-{index}", f"10.8.0.{index + 1}", "new")))
    assert await store.revision() > reader.revision
    await reader.catch_up()
    assert reader.reloads == {"diverged": 1}
    services = reader.view.snapshot.meshes["default"].services
    assert "lost" not in services and "new" in services
    assert answers(reader.view.snapshot) == answers((await follower_of(store)).view.snapshot)


async def lose_revisions_after(store: Store, revision: int) -> None:
    """Make the database as a copy taken at `revision` would be: the later changes and
    what they wrote are gone (here: the one dataplane written since, and its log)."""
    await store.delete_dataplane("default", "lost-1")
    async with store.engine.begin() as connection:
        await connection.execute(delete(ChangeRow).where(ChangeRow.revision > revision))
        await connection.execute(update(RegistryStateRow).values(revision=revision))
