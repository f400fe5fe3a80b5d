"""The defects found from outside, each replayed against real processes as the hostile or
careless user who found it: a scoped IPv6 address that froze the feed, a CLI name that
walked up the API, a dataplane that took over loopback's DNS view, an agent accepted on
global, `./scripts/serve` arguments taken for pip extras, duplicate YAML keys."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from registry.schema import Dataplane
from registry.store import Store
from registry.store.database import create_engine
from tests.factories import dataplane, mesh
from tests.helpers import MESHDNS, ROOT, Meshdns, dig, eventually, free_port, stop_process
from tests.serve_settings import vip_settings

pytestmark = pytest.mark.integration


def put(server: Meshdns, path: str, body: dict, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.put(server.api + path, json=body, headers=headers, timeout=10)


def answers(output: str) -> list[str]:
    return [
        line.split()[-1]
        for line in output.splitlines()
        if line and not line.startswith(";") and line.split()[3:4] == ["A"]
    ]


def inject_unreadable_row(database_url: str) -> None:
    """Store a dataplane with a scoped address straight into the database, as an older
    meshdns did (the API refuses it now)."""
    scoped = Dataplane.model_validate(
        {
            "name": "scoped-1",
            "networking": {
                "address": "fe80::1%eth0",
                "inbound": [{"port": 8080, "tags": {"kuma.io/service": "scoped"}}],
            },
        }
    )

    async def write() -> None:
        engine = create_engine(database_url)
        try:
            await Store(engine, vip_settings()).put(scoped)
        finally:
            await engine.dispose()

    asyncio.run(write())


def test_a_row_the_reader_cannot_read_never_stops_the_feed(start_meshdns, database_url):
    server = start_meshdns(database_url)
    assert put(
        server, "/meshes/default/dataplanes/web-1", dataplane("web-1", "10.0.0.1")
    ).is_success

    # The API refuses the scoped address, naming the field.
    refused = put(
        server, "/meshes/default/dataplanes/scoped-1", dataplane("scoped-1", "fe80::1%eth0")
    )
    assert refused.status_code == 400
    assert refused.json()["causes"][0]["field"] == "networking.address"

    # One written anyway, straight into the database: left out, reported once.
    inject_unreadable_row(database_url)
    eventually(
        lambda: "cannot be read" in server.log(), what="the unreadable row reported", timeout=10
    )
    started = time.monotonic()
    assert put(server, "/meshes/default/dataplanes/db-1", dataplane("db-1", "10.0.0.2")).is_success
    # Read your writes: the PUT answers once this server's DNS has it.
    assert len(answers(dig(server.dns_port, "db.mesh"))) == 1
    print(f"PUT to DNS answer after an unreadable row: {time.monotonic() - started:.3f} s")
    assert httpx.get(server.api + "/readyz").status_code == 200
    metrics = httpx.get(server.api + "/metrics").text
    assert "meshdns_snapshot_unreadable_rows_total 1.0" in metrics
    assert server.log().count("cannot be read") == 1

    # Restarted on that database, serve starts and answers.
    assert server.stop() == 0
    again = start_meshdns(database_url)
    assert len(answers(dig(again.dns_port, "db.mesh"))) == 1
    assert len(answers(dig(again.dns_port, "web.mesh"))) == 1
    assert "cannot be read" in again.log()


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory):
    """One `meshdns serve` on SQLite, shared by the tests that only add to it."""
    directory = tmp_path_factory.mktemp("standalone")
    url = f"sqlite+aiosqlite:///{directory / 'meshdns.db'}"
    server = Meshdns(database_url=url, cwd=directory).start()
    yield server
    server.stop()


def test_a_cli_name_cannot_walk_up_the_api(standalone):
    server = standalone
    assert put(server, "/meshes/victim", mesh("victim")).is_success
    assert put(server, "/meshes/victim/dataplanes/v-1", dataplane("v-1", mesh="victim")).is_success
    for name in ("../../victim", "../victim", "..", "a/b", "%2e%2e"):
        deleted = server.cli("delete", "dataplane", name, "-m", "default")
        assert deleted.returncode != 0
        assert "is not a resource name" in deleted.stderr, deleted.stderr
    deleted = server.cli("delete", "mesh", "../victim")
    assert deleted.returncode != 0
    listed = server.cli("get", "dataplanes", "-m", "../victim")
    assert listed.returncode != 0 and "is not a resource name" in listed.stderr
    assert httpx.get(server.api + "/meshes/victim").status_code == 200
    assert httpx.get(server.api + "/meshes/victim/dataplanes/v-1").status_code == 200
    # The server refuses such names itself, whoever sends them.
    raw = httpx.delete(server.api + "/meshes/default/dataplanes/%2e%2e")
    assert raw.status_code == 400 and raw.json()["causes"][0]["field"] == "name"


def test_a_dataplane_at_the_resolvers_address_changes_no_answer(standalone, tmp_path):
    server = standalone
    for name, address in (("backend-1", "10.0.1.1"), ("web-1", "10.0.1.2")):
        assert put(
            server, f"/meshes/default/dataplanes/{name}", dataplane(name, address)
        ).is_success
    before = {
        name: dig(server.dns_port, "-b", "127.0.0.1", f"{name}.mesh") for name in ("backend", "web")
    }
    assert all(len(answers(output)) == 1 for output in before.values())

    assert put(server, "/meshes/evil", mesh("evil")).is_success
    made = subprocess.run(
        [MESHDNS, "token", "generate", "--type", "dataplane", "--mesh", "evil"]
        + ["--service", "backend", "--database-url", server.database_url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    evil = dataplane("backend-evil", "127.0.0.1", "backend", mesh="evil")
    assert put(server, "/meshes/evil/dataplanes/backend-evil", evil, token).status_code == 201
    for name, output in before.items():
        after = dig(server.dns_port, "-b", "127.0.0.1", f"{name}.mesh")
        assert answers(after) == answers(output), (name, after)
    # Nor may the token take an address another mesh's dataplane holds.
    squat = dataplane("backend-squat", "10.0.1.2", "backend", mesh="evil")
    refused = put(server, "/meshes/evil/dataplanes/backend-squat", squat, token)
    assert refused.status_code == 403
    assert '"default"' in refused.json()["details"]
    assert answers(dig(server.dns_port, "-b", "127.0.0.1", "web.mesh")) == answers(before["web"])


DUPLICATE = """\
type: Dataplane
mesh: default
name: dup-1
networking:
  address: 10.0.2.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: dup
        kuma.io/service: other
"""


def test_apply_refuses_a_key_given_twice(standalone, tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(DUPLICATE)
    applied = standalone.cli("apply", "-f", str(path))
    assert applied.returncode != 0
    assert '"kuma.io/service"' in applied.stderr and "line 10" in applied.stderr
    assert "nothing was applied" in applied.stderr
    assert httpx.get(standalone.api + "/meshes/default/dataplanes/dup-1").status_code == 404


def test_an_agent_is_refused_by_a_global_control_plane(start_meshdns, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'global.db'}"
    global_cp = start_meshdns(url, "--mode", "global")
    file = tmp_path / "dp.yaml"
    file.write_text(json.dumps(dataplane("zone-a.backend-1", "127.0.0.5", "backend")))
    agent = subprocess.run(
        [MESHDNS, "dp", "run", "--cp", global_cp.api, "--dataplane-file", str(file)]
        + ["--dns-port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert agent.returncode != 0
    assert "405" in agent.stderr
    assert "read-only on a global control plane" in agent.stderr
    assert "dp run --cp" in agent.stderr  # where dataplanes register
    listed = httpx.get(global_cp.api + "/meshes/default/dataplanes").json()
    assert listed["total"] == 0
    for route in ("heartbeat", "disconnect"):
        response = httpx.post(
            global_cp.api + f"/meshes/default/dataplanes/zone-a.backend-1/{route}"
        )
        assert response.status_code == 405, route


def test_scripts_serve_passes_its_arguments_to_serve(tmp_path: Path):
    shown = subprocess.run(
        [str(ROOT / "scripts" / "serve"), "--help"], capture_output=True, text=True, timeout=300
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage: meshdns serve")
    dns_port, api_port = free_port(), free_port()
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "serve"), "--dns-port", str(dns_port)]
            + ["--api-port", str(api_port)]
            + ["--database-url", f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(
            lambda: "status: NOERROR" in dig(dns_port, "mesh", "SOA"),
            what=f"scripts/serve answering on port {dns_port}",
            timeout=60,
        )
    finally:
        stop_process(process)
