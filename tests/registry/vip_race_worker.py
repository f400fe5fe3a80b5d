"""One of the processes of the VIP race test: allocates VIPs as told, reports what it got.

Usage: vip_race_worker.py URL MODE PREFIX SEED (MODE: allocator or store). It prints
"ready", waits for a line on stdin so that all workers start together, then prints one
JSON object mapping "mesh/service" to the IPv4 VIP it was given.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from datetime import UTC, datetime

from meshdns.settings import Settings
from meshdns.wiring import vip_settings
from registry.schema import parse_resource
from registry.store import Store
from registry.store.database import create_engine
from registry.store.vips import allocate_vip

MESHES = ("alpha", "beta")
OWN = 40  # services only this worker allocates
SHARED = 20  # services every worker allocates


def work(prefix: str, seed: int) -> list[tuple[str, str]]:
    own = [(MESHES[i % 2], f"{prefix}-{i}") for i in range(OWN)]
    shared = [(MESHES[i % 2], f"shared-{i}") for i in range(SHARED)]
    items = own + shared
    random.Random(seed).shuffle(items)
    return items


async def main(url: str, mode: str, prefix: str, seed: int) -> None:
    engine = create_engine(url)
    store = Store(engine, vip_settings(Settings()))
    async with engine.connect():
        pass  # connect before the start line, so the workers really overlap
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    results = {}
    for number, (mesh, service) in enumerate(work(prefix, seed)):
        if mode == "allocator":
            # Straight at the allocator, without the store's revision lock: only the
            # database's constraints stand between the workers.
            async with engine.begin() as connection:
                vip = await allocate_vip(connection, mesh, service, store.vips, datetime.now(UTC))
            results[f"{mesh}/{service}"] = str(vip.address)
        else:
            await store.put(
                parse_resource(
                    {
                        "type": "Dataplane",
                        "mesh": mesh,
                        "name": f"{prefix}-dp-{number}",
                        "networking": {
                            "address": "10.0.0.1",
                            "inbound": [{"port": 80, "tags": {"kuma.io/service": service}}],
                        },
                    }
                )
            )
    await engine.dispose()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
