"""Agents against a real control plane: liveness, clean-up, readiness, local DNS."""

from __future__ import annotations

import re
import signal
from typing import Any

import httpx

from tests.agent.conftest import FAST_LIVENESS, answers, overview, resolved, wait_for
from tests.factories import dataplane, inbound
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
    cluster, postgres_database_url
):
    # The clean-up delay must outlast the checks made while web-1 is offline (several
    # `meshdns get` processes): at 3 s a loaded machine deleted it before they ran.
    server = cluster.serve(postgres_database_url, *FAST_LIVENESS, "--agent-cleanup-delay", "8")
    killed = cluster.agent(dataplane("web-1", "10.0.0.1", "web", ready=True))
    kept = cluster.agent(dataplane("web-2", "10.0.0.2", "web", ready=True))
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


def test_not_ready_inbound_is_no_endpoint_but_keeps_the_vip(cluster, postgres_database_url):
    server = cluster.serve(postgres_database_url, *FAST_LIVENESS)
    agent = cluster.agent(
        dataplane(
            "mixed-1",
            "10.0.1.1",
            inbounds=[inbound("api", 8080, ready=True), inbound("admin", 9090, ready=False)],
        )
    )
    cluster.agent(dataplane("api-2", "10.0.1.2", "api", ready=False))
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
    agent = cluster.agent(dataplane("web-1", "10.0.2.1", "web", ready=True))
    wait_for(lambda: answers(agent.dns_port, "web.mesh"), message="web VIP at the agent")
    for name, qtype in [("web.mesh", "A"), ("web.endpoints.mesh", "A"), ("_web._tcp.mesh", "SRV")]:
        assert answers(agent.dns_port, name, qtype) == answers(server.dns_port, name, qtype)
    assert "status: NXDOMAIN" in dig(agent.dns_port, "nothing.mesh")

    put = httpx.put(
        f"{server.api}/meshes/default/dataplanes/db-1",
        json=dataplane("db-1", "10.0.2.9", "db", port=5432, ready=True),
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


# Issue 16, acceptance 6: the agent answers its dataplane's names of Kuma's service model.

EXCLUSIVE = """
type: Mesh
name: default
meshServices:
  mode: Exclusive
---
type: Dataplane
mesh: default
name: redis-1
networking:
  address: 127.0.32.1
  inbound:
    - port: 6379
      tags:
        kuma.io/service: redis
---
type: MeshExternalService
name: httpbin
mesh: default
spec:
  match:
    type: HostnameGenerator
    port: 443
    protocol: tcp
  endpoints:
    - address: httpbin.org
      port: 443
"""
WEB, NARROW = "127.0.32.10", "127.0.32.11"


def reverse(address: str) -> str:
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa"


def test_agent_answers_its_dataplanes_service_model_names_through_an_outage(
    cluster, postgres_database_url
):
    server = cluster.serve(postgres_database_url, *FAST_LIVENESS)
    applied = server.cli("apply", "-f", "-", input=EXCLUSIVE)
    assert applied.returncode == 0, applied.stderr
    wait_for(
        lambda: resolved(server.dns_port, "redis.svc.mesh.local")[1], message="redis generated"
    )
    vip = resolved(server.dns_port, "redis.svc.mesh.local")[1][0]
    external = resolved(server.dns_port, "httpbin.extsvc.mesh.local")[1]
    assert vip.startswith("241.") and external and external[0].startswith("242.")

    web = cluster.agent(dataplane("web-1", WEB, "web", ready=True))
    narrow_document = dataplane("narrow-1", NARROW, "shop", ready=True)
    narrow_document["networking"]["transparentProxying"] = {
        "redirectPortInbound": 15006,
        "redirectPortOutbound": 15001,
        "reachableBackends": {"refs": [{"kind": "MeshService", "name": "redis"}]},
    }
    narrow = cluster.agent(narrow_document)
    names = [
        ("redis.svc.mesh.local", "A"),
        ("_6379._tcp.redis.svc.mesh.local", "SRV"),
        ("7f002001.addr.mesh", "A"),
        (reverse(vip), "PTR"),
        ("httpbin.extsvc.mesh.local", "A"),
        ("_443._tcp.httpbin.extsvc.mesh.local", "SRV"),
        ("redis.mesh", "A"),
        ("web.mesh", "A"),
        ("nothing.svc.mesh.local", "A"),
    ]

    def as_the_control_plane_answers(agent, address: str) -> dict[tuple[str, str], Any]:
        """The agent's answers, once they are the control plane's for its dataplane."""

        def same() -> dict[tuple[str, str], Any] | None:
            theirs = {(n, t): resolved(server.dns_port, n, t, "-b", address) for n, t in names}
            ours = {(n, t): resolved(agent.dns_port, n, t) for n, t in names}
            return ours if ours == theirs else None

        return wait_for(same, message=f"{agent.name} answering as the control plane")

    seen = as_the_control_plane_answers(web, WEB)
    assert seen[("redis.svc.mesh.local", "A")] == ("NOERROR", [vip])
    assert seen[("_6379._tcp.redis.svc.mesh.local", "SRV")] == (
        "NOERROR",
        ["0 1 6379 7f002001.addr.mesh."],
    )
    assert seen[("7f002001.addr.mesh", "A")] == ("NOERROR", ["127.0.32.1"])
    assert seen[(reverse(vip), "PTR")] == ("NOERROR", ["redis.svc.mesh.local."])
    assert seen[("httpbin.extsvc.mesh.local", "A")] == ("NOERROR", external)
    assert seen[("_443._tcp.httpbin.extsvc.mesh.local", "SRV")] == (
        "NOERROR",
        ["0 1 443 httpbin.org."],
    )
    # Exclusive: no legacy name answers, its own service's included.
    assert seen[("redis.mesh", "A")][0] == "NXDOMAIN"
    assert seen[("web.mesh", "A")][0] == "NXDOMAIN"

    # reachableBackends naming redis only: no other hostname resolves.
    narrowed = as_the_control_plane_answers(narrow, NARROW)
    assert narrowed[("redis.svc.mesh.local", "A")] == ("NOERROR", [vip])
    assert (
        narrowed[("_6379._tcp.redis.svc.mesh.local", "SRV")]
        == seen[("_6379._tcp.redis.svc.mesh.local", "SRV")]
    )
    assert narrowed[("httpbin.extsvc.mesh.local", "A")][0] == "NXDOMAIN"
    assert narrowed[("_443._tcp.httpbin.extsvc.mesh.local", "SRV")][0] == "NXDOMAIN"

    # The control plane stops: both keep answering the same.
    assert server.stop() == 0
    for agent, before in ((web, seen), (narrow, narrowed)):
        assert agent.process is not None and agent.process.poll() is None
        assert {(n, t): resolved(agent.dns_port, n, t) for n, t in names} == before


CROSS_ZONE = """
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
---
type: ZoneIngress
name: ingress-b
zone: zone-b
networking:
  address: 10.9.0.1
  port: 10001
availableServices:
  - mesh: default
    instances: 1
    tags:
      kuma.io/service: ledger
---
type: TrafficPermission
mesh: default
name: web-to-ledger
sources:
  - match:
      kuma.io/service: web
destinations:
  - match:
      kuma.io/service: ledger
"""
DB = "127.0.32.12"


def test_agent_answers_the_other_zones_services_its_dataplane_may_reach(
    cluster, postgres_database_url
):
    server = cluster.serve(postgres_database_url, *FAST_LIVENESS)
    applied = server.cli("apply", "-f", "-", input=CROSS_ZONE)
    assert applied.returncode == 0, applied.stderr
    web = cluster.agent(dataplane("web-1", WEB, "web", ready=True))
    db = cluster.agent(dataplane("db-1", DB, "db", port=5432, ready=True))
    names = [("ledger.mesh", "A"), ("_ledger._tcp.mesh", "SRV"), ("ledger.endpoints.mesh", "A")]

    def answered(agent, address: str) -> dict[tuple[str, str], Any]:
        def same() -> dict[tuple[str, str], Any] | None:
            theirs = {(n, t): resolved(server.dns_port, n, t, "-b", address) for n, t in names}
            ours = {(n, t): resolved(agent.dns_port, n, t) for n, t in names}
            return ours if ours == theirs and ours[names[0]][1 if agent is web else 0] else None

        return wait_for(same, message=f"{agent.name} answering as the control plane")

    # web may reach zone-b's ledger (mTLS and a permission): its VIP, the ingress.
    seen = answered(web, WEB)
    assert seen[("ledger.mesh", "A")][1][0].startswith("240.")
    assert seen[("_ledger._tcp.mesh", "SRV")] == ("NOERROR", ["1 1 10001 0a090001.addr.mesh."])
    # db may not: the name does not exist for it, here or at the control plane.
    assert answered(db, DB)[("ledger.mesh", "A")][0] == "NXDOMAIN"

    # The permission goes: ledger goes from web's agent as well.
    deleted = httpx.delete(
        f"{server.api}/meshes/default/traffic-permissions/web-to-ledger", timeout=5
    )
    assert deleted.status_code == 200, deleted.text
    wait_for(
        lambda: resolved(web.dns_port, "ledger.mesh")[0] == "NXDOMAIN",
        message="ledger gone from web's agent",
    )
