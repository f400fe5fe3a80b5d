"""`meshdns serve` end to end: apply with the CLI, ask with dig and dnspython, restart."""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx
import pytest

from tests.helpers import MESHDNS, ROOT, Meshdns, dig

pytestmark = pytest.mark.integration

EXAMPLE = str(ROOT / "examples" / "dataplanes.yaml")
KUMA_EXAMPLE = str(ROOT / "examples" / "kuma-universal.yaml")
VIP_RANGE = ipaddress.ip_network("240.0.0.0/4")


def answer_addresses(output: str) -> list[str]:
    return re.findall(r"^\S+\s+\d+\s+IN\s+A{1,4}\s+(\S+)$", output, re.MULTILINE)


def status(output: str) -> str:
    match = re.search(r"status: (\w+)", output)
    assert match, output
    return match.group(1)


def flags(output: str) -> set[str]:
    match = re.search(r";; flags: ([a-z ]+);", output)
    assert match, output
    return set(match.group(1).split())


def test_apply_then_dig_gives_a_stable_vip(start_meshdns, database_url):
    server = start_meshdns(database_url)
    applied = server.cli("apply", "-f", EXAMPLE)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        'Resource type="Dataplane" mesh="default" name="backend-1" Created',
        'Resource type="Dataplane" mesh="default" name="backend-2" Created',
        'Resource type="Dataplane" mesh="default" name="web-1" Created',
    ]

    output = dig(server.dns_port, "backend.mesh")
    assert status(output) == "NOERROR"
    assert "aa" in flags(output)
    [vip] = answer_addresses(output)
    assert ipaddress.ip_address(vip) in VIP_RANGE
    [web_vip] = answer_addresses(dig(server.dns_port, "web.mesh"))
    assert web_vip != vip

    again = server.cli("apply", "-f", EXAMPLE)
    assert again.stdout.count(" Updated") == 3, again.stdout

    assert server.stop() == 0
    restarted = start_meshdns(database_url)
    assert answer_addresses(dig(restarted.dns_port, "backend.mesh")) == [vip]
    assert answer_addresses(dig(restarted.dns_port, "web.mesh")) == [web_vip]


def test_negative_answers_and_garbage(start_meshdns, database_url):
    # Nobody may recurse: names outside the zone are REFUSED, never sent upstream.
    server = start_meshdns(database_url, "--allow-recursion", "none")
    assert server.cli("apply", "-f", EXAMPLE).returncode == 0

    missing = dig(server.dns_port, "nosuch.mesh")
    assert status(missing) == "NXDOMAIN"
    assert re.search(r"AUTHORITY SECTION:\nmesh\.\s+\d+\s+IN\s+SOA\s", missing), missing

    nodata = dig(server.dns_port, "backend.mesh", "AAAA")
    assert status(nodata) == "NOERROR"
    assert "ANSWER: 0," in nodata
    assert re.search(r"AUTHORITY SECTION:\nmesh\.\s+\d+\s+IN\s+SOA\s", nodata), nodata

    assert status(dig(server.dns_port, "example.com")) == "REFUSED"

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for garbage in (bytes(12), b"\xff" * 12, bytes(range(12)), b"\x00\x01", b"x" * 700):
            udp.sendto(garbage, ("127.0.0.1", server.dns_port))
    assert answer_addresses(dig(server.dns_port, "backend.mesh"))
    assert server.process.poll() is None


def test_dnspython_sees_authoritative_answer_with_question_case_kept(start_meshdns, database_url):
    server = start_meshdns(database_url)
    assert server.cli("apply", "-f", EXAMPLE).returncode == 0
    query = dns.message.make_query("BackEnd.MESH.", dns.rdatatype.A)
    for ask in (dns.query.udp, dns.query.tcp):
        reply = ask(query, "127.0.0.1", port=server.dns_port, timeout=3)
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.flags & dns.flags.AA
        assert reply.question[0].name.to_text() == "BackEnd.MESH."
        [rrset] = reply.answer
        assert rrset.ttl == 30
        assert ipaddress.ip_address(rrset[0].address) in VIP_RANGE


def test_invalid_document_among_valid_ones_writes_nothing(start_meshdns, database_url, tmp_path):
    server = start_meshdns(database_url)
    documents = Path(EXAMPLE).read_text().replace("address: 127.0.10.2", "address: 127.0.10.x")
    applied = server.cli("apply", "-f", "-", input=documents)
    assert applied.returncode != 0
    assert "document 2" in applied.stderr and "backend-2" in applied.stderr
    assert "networking.address" in applied.stderr
    listed = httpx.get(server.api + "/meshes/default/dataplanes").json()
    assert listed["total"] == 0
    assert status(dig(server.dns_port, "backend.mesh")) == "NXDOMAIN"

    # The server is the authority too: a batch it rejects is written in no part.
    body = "items:\n" + "".join(
        f"  - {{type: Dataplane, mesh: default, name: dp-{i}, networking: "
        f"{{address: 127.0.0.{i}, inbound: [{{port: 80, tags: {{kuma.io/service: s{i}}}}}]}}}}\n"
        for i in (1, 2)
    )
    body += "  - {type: Dataplane, mesh: default, name: dp-3, networking: {address: 1.2.3}}\n"
    response = httpx.post(server.api + "/apply", content=body)
    assert response.status_code == 400
    assert any(c["field"].startswith("items[2].networking") for c in response.json()["causes"])
    assert httpx.get(server.api + "/meshes/default/dataplanes").json()["total"] == 0


def test_existing_kuma_universal_yaml_applies_unchanged(start_meshdns, database_url):
    server = start_meshdns(database_url, "--default-mesh", "demo")
    applied = server.cli("apply", "-f", KUMA_EXAMPLE)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        'Resource type="Mesh" name="demo" Created',
        'Resource type="Dataplane" mesh="demo" name="redis-1" Created',
        'Resource type="Dataplane" mesh="demo" name="backend_kuma-demo_svc_8080-1" Created',
    ]
    dotted = answer_addresses(dig(server.dns_port, "backend.kuma-demo.svc.8080.mesh"))
    plain = answer_addresses(dig(server.dns_port, "backend_kuma-demo_svc_8080.mesh"))
    assert dotted == plain and len(dotted) == 1
    assert answer_addresses(dig(server.dns_port, "redis.mesh"))
    stored = httpx.get(server.api + "/meshes/demo/dataplanes/backend_kuma-demo_svc_8080-1").json()
    assert stored["networking"]["outbound"][0] == {"port": 10001, "service": "redis"}
    assert stored["networking"]["inbound"][0]["address"] == "127.0.20.3"


def test_serve_without_database_url_creates_sqlite_and_default_mesh(start_meshdns, tmp_path):
    server = start_meshdns("")
    assert (tmp_path / "meshdns.db").exists()
    listed = server.cli("get", "meshes", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert '"name": "default"' in listed.stdout


@pytest.mark.postgres
def test_serve_refuses_a_postgres_database_behind_migrations(empty_postgres_url, tmp_path):
    server = Meshdns(database_url=empty_postgres_url, cwd=tmp_path)
    refused = subprocess.run(server.command(), capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "meshdns migrate" in lines[0]

    migrated = subprocess.run(
        [MESHDNS, "migrate", "--database-url", empty_postgres_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    server.start()
    try:
        assert httpx.get(server.api + "/meshes").json()["total"] == 1
    finally:
        server.stop()


def test_a_write_is_in_the_writers_dns_when_the_api_answers(start_meshdns, database_url):
    """Read your writes: once a PUT is answered, the same server's DNS has it."""
    server = start_meshdns(database_url)
    for number in range(20):
        body = {
            "type": "Dataplane",
            "mesh": "default",
            "name": f"ryw-{number}",
            "networking": {
                "address": f"127.0.40.{number + 1}",
                "inbound": [{"port": 80, "tags": {"kuma.io/service": f"ryw-{number}"}}],
            },
        }
        response = httpx.put(f"{server.api}/meshes/default/dataplanes/ryw-{number}", json=body)
        assert response.status_code == 201, response.text
        query = dns.message.make_query(f"ryw-{number}.mesh.", dns.rdatatype.A)
        reply = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=3)
        assert reply.rcode() == dns.rcode.NOERROR, f"ryw-{number}.mesh not there yet"


def test_serve_answers_its_long_polls_when_it_stops(start_meshdns, tmp_path):
    """An agent's long poll in flight does not hold `serve` up when it stops: it is
    answered at once (before, the API waited five seconds for it, then cancelled it with
    a traceback in the log)."""
    server = start_meshdns("")
    records = server.api + "/meshes/default/dns-records"
    revision = httpx.get(records, timeout=10).json()["revision"]
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(httpx.get, records, params={"after": revision, "wait": 60}, timeout=60)
        time.sleep(1)  # the poll is waiting on the server
        assert not poll.done()
        started = time.monotonic()
        assert server.stop() == 0
        stopping = time.monotonic() - started
        answer = poll.result(timeout=5)
    assert answer.status_code == 200 and answer.json()["revision"] == revision
    assert "Traceback" not in server.log(), server.log()
    assert stopping < 4, f"serve took {stopping:.1f}s to stop"
