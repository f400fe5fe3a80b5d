"""A bounded change log with real processes: `serve` compacts `changes` to its window
while writes go on, and a replica started afterwards (which cannot replay the log from
the start) answers exactly like the first: every VIP equal, deleted services NXDOMAIN."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from registry.models import ChangeRow
from registry.schema import parse_resources
from registry.store import Store
from registry.store.database import create_engine
from tests.factories import dataplane
from tests.helpers import eventually
from tests.live.livetesting import is_nxdomain, put_dataplane, resolve, wait_for_answer
from tests.serve_settings import vip_settings

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

WINDOW = 500
SERVICES = 50
DATAPLANES = 200
ROUNDS = 10  # each moves every dataplane: 2,000 changes
GONE = [f"svc-{n}" for n in range(40, SERVICES)]


def service(number: int) -> str:
    return f"svc-{number % SERVICES}"


async def churn(url: str) -> None:
    """Every dataplane registered, then moved ROUNDS times; then GONE's deleted."""
    engine = create_engine(url)
    store = Store(engine, vip_settings())
    try:
        for round_ in range(ROUNDS):
            documents = [
                dataplane(f"dp-{n}", f"10.{round_}.{n // 250}.{n % 250 + 1}", service(n))
                for n in range(DATAPLANES)
            ]
            await store.put_many(parse_resources(documents))
        for n in range(DATAPLANES):
            if service(n) in GONE:
                await store.delete_dataplane("default", f"dp-{n}")
    finally:
        await engine.dispose()


async def kept_changes(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(ChangeRow)) or 0)
    finally:
        await engine.dispose()


def test_the_log_keeps_its_window_and_a_new_replica_answers_alike(
    postgres_database_url, start_meshdns
):
    window = ("--change-log-revisions", str(WINDOW), "--change-log-compact-interval", "0.5")
    first = start_meshdns(postgres_database_url, *window)
    asyncio.run(churn(postgres_database_url))
    # Read-your-writes: once this PUT is answered, the first replica holds every change.
    last = put_dataplane(first.api, dataplane("last-1", "10.99.0.1", "last"))
    assert last.status_code == 201, last.text

    eventually(
        lambda: asyncio.run(kept_changes(postgres_database_url)) <= WINDOW,
        f"the change log down to its window of {WINDOW}",
        timeout=60,
    )
    assert "compacted the change log" in first.log()

    second = start_meshdns(postgres_database_url, *window)
    names = [f"svc-{n}.mesh" for n in range(SERVICES)] + ["last.mesh"]
    for name in names:
        expected = resolve(first.dns_port, name)
        assert expected is not None
        if name.removesuffix(".mesh") in GONE:
            assert is_nxdomain(expected), (name, expected)
        else:
            assert expected[0] == "NOERROR" and expected[1], (name, expected)
        answer, _ = wait_for_answer(second.dns_port, name, expected.__eq__)
        assert answer == expected, name
