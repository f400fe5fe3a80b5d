"""Acceptance 3 of issue 5: a real Knot secondary transfers `mesh.` from meshdns and,
told by NOTIFY, answers a new service within seconds of its registration."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import httpx
import pytest

from tests.factories import dataplane
from tests.helpers import free_port, require_tool
from tests.scaleout.scaleouttesting import addresses, ask, eventually, put, udp_socket

pytestmark = [pytest.mark.integration, pytest.mark.interop]

KNOT_CONFIG = """\
server:
    rundir: "{root}/run"
    listen: 127.0.0.1@{port}
log:
  - target: stderr
    any: info
database:
    storage: "{root}/db"
remote:
  - id: meshdns
    address: 127.0.0.1@{primary}
acl:
  - id: notify_from_meshdns
    address: 127.0.0.1
    action: notify
template:
  - id: default
    storage: "{root}/zones"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
zone:
  - domain: mesh
    master: meshdns
    acl: notify_from_meshdns
"""


class Knot:
    """A knotd of its own on loopback ``port``, secondary for `mesh.` from ``primary``."""

    def __init__(self, root: Path, port: int, primary: int) -> None:
        self.port = port
        for folder in ("run", "db", "zones"):
            (root / folder).mkdir(parents=True)
        config = root / "knot.conf"
        config.write_text(KNOT_CONFIG.format(root=root, port=port, primary=primary))
        self.log = root / "knot.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [require_tool("knotd"), "-c", str(config)], stdout=log, stderr=log
            )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def knot(tmp_path) -> Iterator[Knot]:
    """Started by the test (it needs the primary's port): set ``knot.start``."""
    started: list[Knot] = []

    class Starter:
        def start(self, port: int, primary: int) -> Knot:
            started.append(Knot(tmp_path / "knot", port, primary))
            return started[0]

    yield Starter()  # type: ignore[misc]
    for server in started:
        server.stop()


def test_knot_secondary_answers_a_new_service_after_notify(start_meshdns, knot, tmp_path):
    require_tool("knotd")
    secondary_port = free_port()
    server = start_meshdns(
        f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}",
        "--allow-transfer",
        "127.0.0.1/32",
        "--notify",
        f"127.0.0.1:{secondary_port}",
        "--allow-recursion",
        "none",
    )
    put(server, dataplane("web-1", "10.0.0.5", "web"))
    secondary = knot.start(secondary_port, server.dns_port)
    with udp_socket() as sock:

        def answers(name: str) -> list[str]:
            try:
                reply = ask(sock, secondary.port, name)
            except Exception:  # not listening yet, or no answer yet
                return []
            return addresses(reply) if reply.rcode() == dns.rcode.NOERROR else []

        def meshdns_vip(service: str) -> list[str]:
            return addresses(ask(sock, server.dns_port, f"{service}.mesh."))

        # The first transfer: Knot bootstraps the zone from meshdns.
        web = meshdns_vip("web")
        eventually(lambda: answers("web.mesh.") == web, "Knot transferred the zone", 20)
        assert answers("web.endpoints.mesh.") == ["10.0.0.5"]

        # A new service: NOTIFY makes Knot transfer again at once (its SOA refresh is an hour).
        put(server, dataplane("api-1", "10.0.0.9", "api"))
        api = eventually(lambda: meshdns_vip("api"), "meshdns answers api")
        eventually(lambda: answers("api.mesh.") == api, "Knot answers the new service", 10)
        assert answers("api.endpoints.mesh.") == ["10.0.0.9"]
    log = secondary.log.read_text()
    assert "notify" in log.lower(), log
    assert httpx.get(server.api + "/readyz", timeout=5).status_code == 200
