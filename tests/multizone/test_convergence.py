"""The sync worker killed with SIGKILL in the middle of a large sync, again and again:
after a clean restart, global holds exactly the zone's dataplanes (compared row by row).

Each batch is committed whole with the cursor that covers it, so a kill can lose only
an uncommitted batch, which the next run reads again from the cursor.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from registry.models import (
    DataplaneInsightRow,
    DataplaneRow,
    InboundRow,
    InboundTagRow,
    MeshRow,
)
from registry.schema import Dataplane, Mesh
from registry.store import Store
from registry.store.bulk import Replica
from registry.store.database import create_engine
from registry.sync import read_cursor, zone_source
from registry.write_rules import Origin
from tests.factories import dataplane_resource
from tests.multizone.conftest import SyncProcess
from tests.serve_settings import vip_settings

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

ZONE = "zone-a"
DATAPLANES = 8000
BATCH = "100"
KILLS = 6


def numbered_dataplane(index: int, generation: int = 0) -> Dataplane:
    """dp-<index> of svc-<index % 40>, every 7th not ready; each generation moves it (its
    address, port and version tag)."""
    return dataplane_resource(
        f"dp-{index}",
        f"10.{generation}.{index >> 8 & 255}.{index & 255}",
        f"svc-{index % 40}",
        port=8080 + generation,
        tags={"version": f"v{generation}"},
        ready=index % 7 != 0,
    )


async def zone_rows(store: Store, zone: str | None) -> dict[str, set[tuple[Any, ...]]]:
    """The dataplane rows of a registry, named as in the zone: what must be equal."""
    prefix = f"{zone}." if zone else ""
    where = [DataplaneRow.zone == zone] if zone else [DataplaneRow.zone.is_(None)]
    async with store.reading() as connection:
        dataplanes = await connection.execute(
            select(MeshRow.name, DataplaneRow.name, DataplaneRow.address, DataplaneRow.spec)
            .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
            .where(*where)
        )
        inbounds = await connection.execute(
            select(
                DataplaneRow.name,
                InboundRow.position,
                InboundRow.service,
                InboundRow.address,
                InboundRow.port,
                InboundRow.ready,
            )
            .join(DataplaneRow, DataplaneRow.id == InboundRow.dataplane_id)
            .where(*where)
        )
        tags = await connection.execute(
            select(DataplaneRow.name, InboundRow.position, InboundTagRow.key, InboundTagRow.value)
            .join(InboundRow, InboundRow.id == InboundTagRow.inbound_id)
            .join(DataplaneRow, DataplaneRow.id == InboundRow.dataplane_id)
            .where(*where)
        )
        insights = await connection.execute(
            select(DataplaneRow.name, DataplaneInsightRow.online)
            .join(DataplaneRow, DataplaneRow.id == DataplaneInsightRow.dataplane_id)
            .where(*where)
        )

        def spec(value: dict[str, Any]) -> str:
            labels = {
                k: v
                for k, v in (value.get("labels") or {}).items()
                if k not in ("kuma.io/zone", "kuma.io/display-name")
            }
            return repr(
                sorted(
                    {**value, "name": value["name"].removeprefix(prefix), "labels": labels}.items()
                )
            )

        return {
            "dataplanes": {
                (mesh, name.removeprefix(prefix), address, spec(body))
                for mesh, name, address, body in dataplanes
            },
            "inbounds": {(row[0].removeprefix(prefix), *row[1:]) for row in inbounds},
            "tags": {(row[0].removeprefix(prefix), *row[1:]) for row in tags},
            "insights": {(name.removeprefix(prefix), online) for name, online in insights},
        }


async def test_sync_killed_at_random_points_converges_exactly(
    databases: Callable[[], str], start_sync: Callable[..., SyncProcess]
) -> None:
    seed = int(os.environ.get("MESHDNS_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    global_url, zone_url = databases(), databases()
    global_engine, zone_engine = create_engine(global_url), create_engine(zone_url)
    global_store = Store(global_engine, vip_settings(), mode="global")
    zone_store = Store(zone_engine, vip_settings(), mode="zone")

    async def cursor() -> int:
        async with global_store.reading() as connection:
            return await read_cursor(connection, zone_source(ZONE))

    try:
        await global_store.ensure_mesh("default")
        async with zone_store.writing(Origin.REPLICATION) as transaction:
            # The mesh, as the sync worker would bring it from global.
            await zone_store.put_in(transaction, Mesh(name="default"))
        async with zone_store.writing() as transaction:
            await zone_store.put_dataplanes(
                transaction,
                [
                    Replica(numbered_dataplane(i), online=None if i % 3 else i % 2 == 0)
                    for i in range(DATAPLANES)
                ],
            )

        cursors = []
        for kill in range(KILLS):
            worker = start_sync(ZONE, zone_url, global_url, "--sync-batch", BATCH)
            # Killed once it is under way, at a random point of the sync.
            before = cursors[-1] if cursors else 0
            for _ in range(300):
                if await cursor() > before:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            worker.kill()
            cursors.append(await cursor())
            # The zone keeps changing between runs: updates, deletions, new dataplanes.
            changed = rng.sample(range(DATAPLANES), 300)
            async with zone_store.writing() as transaction:
                await zone_store.put_dataplanes(
                    transaction, [Replica(numbered_dataplane(i, kill + 1)) for i in changed[:200]]
                )
                await zone_store.delete_dataplanes(
                    transaction, [("default", f"dp-{i}") for i in changed[200:]]
                )
                await zone_store.put_dataplanes(
                    transaction,
                    [Replica(numbered_dataplane(DATAPLANES + kill * 100 + i)) for i in range(100)],
                )

        worker = start_sync(ZONE, zone_url, global_url, "--sync-batch", BATCH)
        final = await zone_store.revision()
        for _ in range(1200):
            if await cursor() >= final:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"sync did not catch up (seed {seed}):\n{worker.log()}")

        # The kills fell in the middle of the sync, at different points.
        assert len({c for c in cursors if 0 < c < final}) >= 3, (seed, cursors, final)
        expected = await zone_rows(zone_store, None)
        replicated = await zone_rows(global_store, ZONE)
        assert len(expected["dataplanes"]) > DATAPLANES * 0.9
        for table in expected:
            assert replicated[table] == expected[table], (seed, table)
        # Nothing twice: every replicated dataplane is one row.
        async with global_store.reading() as connection:
            names = list(
                await connection.scalars(select(DataplaneRow.name).where(DataplaneRow.zone == ZONE))
            )
        assert len(names) == len(set(names)) == len(expected["dataplanes"])
    finally:
        await global_engine.dispose()
        await zone_engine.dispose()
