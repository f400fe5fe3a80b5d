"""Acceptance 2 of issue 5: under steady query load, no answer after a change is applied
reflects the old data (the answer cache never outlives the snapshot it was built from)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.factories import dataplane
from tests.scaleout.scaleouttesting import (
    addresses,
    ask,
    eventually,
    put,
    revision,
    udp_socket,
)

pytestmark = pytest.mark.integration

MOVES = 5


def test_no_stale_answer_after_a_change_is_applied(start_meshdns, database_url):
    server = start_meshdns(database_url, "--allow-recursion", "none")
    put(server, dataplane("web-1", "10.0.1.0", "web"))
    eventually(lambda: revision(server) > 0, "the first write applied")
    # (sent at, endpoint addresses, VIP answer) for every query of the load loop.
    answers: list[tuple[float, list[str], list[str]]] = []
    stop = threading.Event()

    def load() -> None:
        with udp_socket() as sock:
            while not stop.is_set():
                sent = time.monotonic()
                endpoints = addresses(ask(sock, server.dns_port, "web.endpoints.mesh."))
                vip = addresses(ask(sock, server.dns_port, "web.mesh."))
                answers.append((sent, endpoints, vip))

    loader = threading.Thread(target=load)
    loader.start()
    applied_at = []
    try:
        for move in range(1, MOVES + 1):
            before = revision(server)
            put(server, dataplane("web-1", f"10.0.1.{move}", "web"))
            # Applied: the server's snapshot has moved past the write.
            eventually(lambda before=before: revision(server) > before, "the change applied")
            applied_at.append(time.monotonic())
            time.sleep(0.3)  # keep asking under the new data a while
    finally:
        stop.set()
        loader.join()

    assert len(answers) > 50  # the load was steady, not a handful of queries
    vips = {tuple(vip) for _, _, vip in answers}
    assert len(vips) == 1  # the VIP answer (cached all along) never changed
    for move, applied in enumerate(applied_at, start=1):
        later = [endpoints for sent, endpoints, _ in answers if sent > applied]
        assert later, f"no query after move {move} was applied"
        # Move m or a later one (its write may already be applied too), never an older one.
        current = {f"10.0.1.{m}" for m in range(move, MOVES + 1)}
        stale = [
            endpoints for endpoints in later if len(endpoints) != 1 or endpoints[0] not in current
        ]
        assert not stale, (move, stale[:5])
