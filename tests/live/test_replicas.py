"""Issue 3, acceptance 3: two `meshdns serve` replicas on one Postgres answer each other's writes.

A write through either replica (create, change, delete) shows in the other's DNS. The
delay each time is printed, not asserted: the benchmark measures it; the test only bounds
the wait so that a change that never arrives fails.
"""

from __future__ import annotations

import httpx
import pytest

from tests.factories import dataplane
from tests.live.livetesting import (
    Answer,
    has_addresses,
    is_nxdomain,
    put_dataplane,
    resolve,
    wait_for_answer,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

BOUND = 5.0  # seconds a change may take to reach the other replica before the test fails


def seen(port: int, name: str, expected, what: str) -> Answer:
    answer, seconds = wait_for_answer(port, name, expected, timeout=BOUND)
    assert answer is not None and expected(answer), f"{what}: {name} answered {answer}"
    print(f"{what}: visible in the other replica's DNS after {seconds * 1000:.1f} ms")
    return answer


def test_a_write_through_one_replica_is_answered_by_the_other(postgres_database_url, start_meshdns):
    a = start_meshdns(postgres_database_url)
    b = start_meshdns(postgres_database_url)

    created = put_dataplane(a.api, dataplane("ping-1", "127.0.30.1", "ping"))
    assert created.status_code == 201, created.text
    seen(b.dns_port, "ping.endpoints.mesh", ("NOERROR", ("127.0.30.1",)).__eq__, "create via A")
    vip_in_b = seen(b.dns_port, "ping.mesh", has_addresses, "VIP via A")
    # The writer's own DNS follows the same feed (woken in-process): it too gets there,
    # though not necessarily before the other replica does.
    seen(a.dns_port, "ping.mesh", vip_in_b.__eq__, "VIP in the writing replica")

    created = put_dataplane(b.api, dataplane("pong-1", "127.0.31.1", "pong"))
    assert created.status_code == 201, created.text
    seen(a.dns_port, "pong.endpoints.mesh", ("NOERROR", ("127.0.31.1",)).__eq__, "create via B")
    vip_in_a = seen(a.dns_port, "pong.mesh", has_addresses, "VIP via B")
    seen(b.dns_port, "pong.mesh", vip_in_a.__eq__, "VIP in the writing replica")
    assert vip_in_a != vip_in_b

    # A changed endpoint, and a second replica of a service, through the other side.
    moved = put_dataplane(b.api, dataplane("ping-1", "127.0.30.9", "ping"))
    assert moved.status_code == 200, moved.text
    seen(a.dns_port, "ping.endpoints.mesh", ("NOERROR", ("127.0.30.9",)).__eq__, "update via B")
    added = put_dataplane(a.api, dataplane("pong-2", "127.0.31.2", "pong"))
    assert added.status_code == 201, added.text
    both = ("NOERROR", ("127.0.31.1", "127.0.31.2"))
    seen(b.dns_port, "pong.endpoints.mesh", both.__eq__, "second endpoint via A")
    assert resolve(b.dns_port, "pong.mesh") == vip_in_a, "a new endpoint moved the VIP"

    # Deletes: each replica removes a service the other one created.
    for name in ("pong-1", "pong-2"):
        deleted = httpx.delete(f"{a.api}/meshes/default/dataplanes/{name}", timeout=5)
        assert deleted.status_code == 200, deleted.text
    seen(b.dns_port, "pong.mesh", is_nxdomain, "delete via A")
    assert is_nxdomain(resolve(b.dns_port, "pong.endpoints.mesh") or ("", ()))

    deleted = httpx.delete(f"{b.api}/meshes/default/dataplanes/ping-1", timeout=5)
    assert deleted.status_code == 200, deleted.text
    seen(a.dns_port, "ping.mesh", is_nxdomain, "delete via B")
    assert is_nxdomain(resolve(a.dns_port, "ping.endpoints.mesh") or ("", ()))
