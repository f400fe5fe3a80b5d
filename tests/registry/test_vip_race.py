"""Two processes allocating VIPs at once on one Postgres never produce a duplicate."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.models import VipRow
from registry.store import Store
from registry.store.database import create_engine
from tests.registry.registrytesting import mesh
from tests.registry.vip_race_worker import MESHES, OWN, SHARED
from tests.serve_settings import vip_settings

WORKER = Path(__file__).with_name("vip_race_worker.py")
PREFIXES = ("a", "b")


def run_workers(url: str, mode: str) -> list[dict[str, str]]:
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, mode, prefix, str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed, prefix in enumerate(PREFIXES)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:  # start them together
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [worker.returncode for worker in workers] == [0, 0]
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["allocator", "store"])
async def test_racing_allocators_give_each_service_exactly_one_unique_vip(
    postgres_database_url, mode
):
    engine = create_engine(postgres_database_url)
    try:
        await Store(engine, vip_settings()).put_many([mesh(name) for name in MESHES])

        reports = run_workers(postgres_database_url, mode)

        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(VipRow.mesh, VipRow.service, VipRow.address, VipRow.released_at)
                )
            ).all()
    finally:
        await engine.dispose()

    expected = {(MESHES[i % 2], f"{prefix}-{i}") for prefix in PREFIXES for i in range(OWN)}
    expected |= {(MESHES[i % 2], f"shared-{i}") for i in range(SHARED)}
    assert sorted((row.mesh, row.service) for row in rows) == sorted(expected)
    addresses = sorted(row.address for row in rows)
    assert len(set(addresses)) == len(rows)
    # Lost races waste nothing: the addresses are the first ones of the range.
    first = int(IPv4Address("240.0.0.1"))
    assert addresses == list(range(first, first + len(expected)))
    assert all(row.released_at is None for row in rows)
    by_service = {f"{row.mesh}/{row.service}": str(IPv4Address(row.address)) for row in rows}
    for report in reports:  # what each worker was told is what the database holds
        assert {key: by_service[key] for key in report} == report
