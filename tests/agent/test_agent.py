"""Agents against a real control plane: liveness, clean-up, readiness, local DNS."""

from __future__ import annotations

import re
import signal

import httpx

from tests.agent.conftest import FAST_LIVENESS, answers, dataplane, overview, wait_for
from tests.helpers import dig


def status_cells(server, name: str) -> list[str] | None:
    """The cells of `meshdns get dataplanes` for `name`, from MESH to ADDRESS (None: not
    listed)."""
    listed = server.cli("get", "dataplanes")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["MESH", "NAME", "STATUS"]
    assert header.index("LAST CONNECTED") < header.index("LAST SEEN") < header.index("ORIGIN")
    for row in rows:
        cells = row.split()
        if cells[1] == name:
            return cells[:7]
    return None


def status_column(server, name: str) -> str | None:
    """The STATUS cell of `meshdns get dataplanes` for `name` (None: not listed)."""
    cells = status_cells(server, name)
    return None if cells is None else cells[2]


def test_killed_agent_goes_offline_then_is_removed_and_sigterm_removes_at_once(
    cluster, database_url
):
    # The clean-up delay must outlast the checks made while web-1 is offline (several
    # `meshdns get` processes): at 3 s a loaded machine deleted it before they ran.
    server = cluster.serve(database_url, *FAST_LIVENESS, "--agent-cleanup-delay", "8")
    killed = cluster.agent(dataplane("web-1", "10.0.0.1", ("web", 8080, True)))
    kept = cluster.agent(dataplane("web-2", "10.0.0.2", ("web", 8080, True)))
    both = ["10.0.0.1", "10.0.0.2"]
    for port in (server.dns_port, kept.dns_port):
        wait_for(lambda p=port: answers(p, "web.endpoints.mesh") == both, message="both endpoints")
    assert status_column(server, "web-1") == "Online"
    vip = answers(server.dns_port, "web.mesh")

    assert killed.signal(signal.SIGKILL) == -signal.SIGKILL
    for port in (server.dns_port, kept.dns_port):
        wait_for(
            lambda p=port: answers(p, "web.endpoints.mesh") == ["10.0.0.2"],
            message="the killed agent's endpoint gone",
        )
        srv = answers(port, "_web._tcp.mesh", "SRV")
        assert len(srv) == 1 and srv[0].startswith("0 1 8080 0a000002.addr.mesh")
        assert answers(port, "web.mesh") == vip  # the VIP stays
    assert status_column(server, "web-1") == "Offline"
    # Acceptance 3 of issue 9: online/offline and last seen, for each dataplane.
    for name, status in (("web-1", "Offline"), ("web-2", "Online")):
        cells = status_cells(server, name)
        assert cells is not None and cells[2] == status
        assert re.fullmatch(r"\d+[smhd]", cells[4]), cells  # LAST SEEN: an age
    insight = overview(server, "web-1")
    assert insight is not None and insight["dataplaneInsight"]["online"] is False
    assert insight["dataplaneInsight"]["disconnectTime"] is not None
    assert status_column(server, "web-2") == "Online"

    # Later (the clean-up delay), the agent-created dataplane is deleted.
    wait_for(lambda: overview(server, "web-1") is None, message="web-1 deleted")
    assert status_column(server, "web-1") is None

    # SIGTERM: the agent deregisters before it exits, so it is gone at once.
    assert kept.signal(signal.SIGTERM) == 0
    response = httpx.get(f"{server.api}/meshes/default/dataplanes/web-2", timeout=5)
    assert response.status_code == 404
    assert answers(server.dns_port, "web.endpoints.mesh") == []


def test_not_ready_inbound_is_no_endpoint_but_keeps_the_vip(cluster, database_url):
    server = cluster.serve(database_url, *FAST_LIVENESS)
    agent = cluster.agent(
        dataplane("mixed-1", "10.0.1.1", ("api", 8080, True), ("admin", 9090, False))
    )
    cluster.agent(dataplane("api-2", "10.0.1.2", ("api", 8080, False)))
    for port in (server.dns_port, agent.dns_port):
        wait_for(lambda p=port: answers(p, "admin.mesh"), message="admin VIP")
        wait_for(lambda p=port: len(answers(p, "api.mesh")) == 1, message="api VIP")
        assert answers(port, "api.endpoints.mesh") == ["10.0.1.1"]
        srv = answers(port, "_api._tcp.mesh", "SRV")
        assert len(srv) == 1 and srv[0].startswith("0 1 8080 0a000101.addr.mesh")
        assert answers(port, "admin.endpoints.mesh") == []
        assert answers(port, "_admin._tcp.mesh", "SRV") == []
        assert answers(port, "admin.mesh")[0].startswith("240.")


def test_agent_answers_like_the_control_plane_and_follows_changes(cluster, database_url):
    server = cluster.serve(database_url, *FAST_LIVENESS)
    agent = cluster.agent(dataplane("web-1", "10.0.2.1", ("web", 8080, True)))
    wait_for(lambda: answers(agent.dns_port, "web.mesh"), message="web VIP at the agent")
    for name, qtype in [("web.mesh", "A"), ("web.endpoints.mesh", "A"), ("_web._tcp.mesh", "SRV")]:
        assert answers(agent.dns_port, name, qtype) == answers(server.dns_port, name, qtype)
    assert "status: NXDOMAIN" in dig(agent.dns_port, "nothing.mesh")

    put = httpx.put(
        f"{server.api}/meshes/default/dataplanes/db-1",
        json=dataplane("db-1", "10.0.2.9", ("db", 5432, True)),
        timeout=5,
    )
    assert put.status_code == 201
    wait_for(
        lambda: answers(agent.dns_port, "db.endpoints.mesh") == ["10.0.2.9"],
        message="a change reaching the agent",
    )
    assert answers(agent.dns_port, "db.mesh") == answers(server.dns_port, "db.mesh")
    httpx.delete(f"{server.api}/meshes/default/dataplanes/db-1", timeout=5)
    wait_for(
        lambda: (
            "status: NXDOMAIN" in __import__("tests.helpers").helpers.dig(agent.dns_port, "db.mesh")
        ),
        message="a deletion reaching the agent",
    )
