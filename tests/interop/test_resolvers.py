"""Real resolvers in front of a real `meshdns serve`: unbound, dnsmasq, and glibc's
getent with a resolv.conf pointing at meshdns (in a network namespace of its own, where
meshdns can take port 53). Also the per-client mesh, forwarding and TTL options end to
end. These are the README's "Pointing a resolver at it" instructions, run."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dns.stubupstream import UPSTREAM_A
from tests.helpers import IN_CI, MESHDNS, Meshdns, eventually, free_port, require_tool

pytestmark = pytest.mark.interop

TTL, ENDPOINTS_TTL, NEGATIVE_TTL = 7, 3, 11
REGISTRY = """
type: Mesh
name: blue
---
type: Mesh
name: green
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 127.0.40.1
  inbound: [{port: 8080, tags: {kuma.io/service: backend}}]
---
type: Dataplane
mesh: default
name: backend-2
networking:
  address: 127.0.40.2
  inbound: [{port: 8081, tags: {kuma.io/service: backend}}]
---
type: Dataplane
mesh: blue
name: web-blue
networking:
  address: 127.0.41.1
  inbound: [{port: 80, tags: {kuma.io/service: web}}]
---
type: Dataplane
mesh: green
name: web-green
networking:
  address: 127.0.42.1
  inbound: [{port: 80, tags: {kuma.io/service: web}}]
"""


@pytest.fixture(scope="module")
def meshdns(tmp_path_factory, upstream) -> Iterator[Meshdns]:
    workdir = tmp_path_factory.mktemp("meshdns")
    server = Meshdns(
        database_url=f"sqlite+aiosqlite:///{workdir / 'registry.db'}",
        cwd=workdir,
        extra=(
            "--ttl", str(TTL),
            "--endpoints-ttl", str(ENDPOINTS_TTL),
            "--negative-ttl", str(NEGATIVE_TTL),
            "--upstream", upstream.address,
            "--allow-recursion", "127.0.0.1/32,dataplanes",
        ),
    ).start()  # fmt: skip
    try:
        applied = server.cli("apply", "-f", "-", input=REGISTRY)
        assert applied.returncode == 0, applied.stderr
        yield server
    finally:
        server.stop()


def dig(port: int, name: str, *options: str) -> str:
    command = [require_tool("dig"), "@127.0.0.1", "-p", str(port), name, "+tries=1", "+time=5"]
    done = subprocess.run(command + list(options), capture_output=True, text=True, timeout=30)
    return done.stdout


def status(output: str) -> str:
    match = re.search(r"status: (\w+)", output)
    assert match, output
    return match.group(1)


def answers(output: str) -> list[tuple[str, int, str, str]]:
    """(name, ttl, type, data) of each answer record."""
    section = re.search(r";; ANSWER SECTION:\n(.*?)(?:\n\n|\Z)", output, re.DOTALL)
    if not section:
        return []
    records = []
    for line in section.group(1).splitlines():
        owner, ttl, _, rdtype, *data = line.split()
        records.append((owner, int(ttl), rdtype, " ".join(data)))
    return records


def vip(meshdns: Meshdns, name: str = "backend.mesh", *options: str) -> str:
    [(_, _, _, address)] = answers(dig(meshdns.dns_port, name, *options))
    return address


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    """Until something answers DNS on port (the resolver is up), or it died."""

    def answering() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"resolver exited:\n{log.read_text()}")
        return "status:" in dig(port, "mesh", "SOA", "+time=1")

    eventually(answering, lambda: f"resolver answering on {port}:\n{log.read_text()}", 30)


class TestMeshdnsItself:
    def test_ttl_options_are_used(self, meshdns):
        [(_, ttl, _, _)] = answers(dig(meshdns.dns_port, "backend.mesh"))
        assert ttl == TTL
        records = answers(dig(meshdns.dns_port, "backend.endpoints.mesh"))
        assert {record[1] for record in records} == {ENDPOINTS_TTL}
        assert sorted(record[3] for record in records) == ["127.0.40.1", "127.0.40.2"]
        missing = dig(meshdns.dns_port, "nosuch.mesh")
        soa = re.search(r"AUTHORITY SECTION:\nmesh\.\s+(\d+)\s+IN\s+SOA\s+.* (\d+)\n", missing)
        assert soa and soa.groups() == (str(NEGATIVE_TTL), str(NEGATIVE_TTL)), missing

    def test_srv_and_addresses(self, meshdns):
        output = dig(meshdns.dns_port, "_backend._tcp.mesh", "SRV")
        assert sorted(record[3] for record in answers(output)) == [
            "0 1 8080 7f002801.addr.mesh.",
            "0 1 8081 7f002802.addr.mesh.",
        ]
        assert re.search(
            r"ADDITIONAL SECTION:\n7f002801\.addr\.mesh\.\s+3\s+IN\s+A\s+127\.0\.40\.1", output
        ) or re.search(r"7f002801\.addr\.mesh\.\s+3\s+IN\s+A\s+127\.0\.40\.1", output), output
        backend = vip(meshdns)
        reverse = ".".join(reversed(backend.split("."))) + ".in-addr.arpa"
        assert answers(dig(meshdns.dns_port, reverse, "PTR"))[0][3] == "backend.mesh."

    def test_two_meshes_answer_their_own_clients(self, meshdns):
        blue = vip(meshdns, "web.mesh", "-b", "127.0.41.1")
        green = vip(meshdns, "web.mesh", "-b", "127.0.42.1")
        assert blue != green
        # Anyone else is answered in the default mesh, which has no web.
        assert status(dig(meshdns.dns_port, "web.mesh", "-b", "127.0.0.5")) == "NXDOMAIN"
        # And the blue client does not see the default mesh's backend.
        assert status(dig(meshdns.dns_port, "backend.mesh", "-b", "127.0.41.1")) == "NXDOMAIN"

    def test_forwarding_acl(self, meshdns):
        """Issue 4, acceptance 4: the stub upstream's answer, or REFUSED."""
        allowed = dig(meshdns.dns_port, "example.com")
        assert status(allowed) == "NOERROR"
        assert [record[3] for record in answers(allowed)] == [UPSTREAM_A]
        assert " ra" in allowed.split(";; flags:")[1].split(";")[0]
        refused = dig(meshdns.dns_port, "example.com", "-b", "127.0.0.2")
        assert status(refused) == "REFUSED" and answers(refused) == []
        # A registered dataplane may recurse ("dataplanes" in the ACL).
        assert status(dig(meshdns.dns_port, "example.com", "-b", "127.0.42.1")) == "NOERROR"


UNBOUND_ZONES = {
    "stub-zone": 'stub-zone:\n  name: "mesh"\n  stub-addr: 127.0.0.1@{port}\n',
    "forward-zone": 'forward-zone:\n  name: "mesh"\n  forward-addr: 127.0.0.1@{port}\n',
}


@pytest.mark.parametrize("zone", list(UNBOUND_ZONES))
def test_unbound_in_front(meshdns, tmp_path, zone):
    """Issue 4, acceptance 3: unbound, as the README configures it."""
    unbound = require_tool("unbound")
    port = free_port()
    config = tmp_path / "unbound.conf"
    # Root hints on loopback: whatever unbound might look up beyond mesh. stays here.
    hints = tmp_path / "root.hints"
    hints.write_text(".  3600000 NS root.invalid.\nroot.invalid.  3600000 A 127.0.0.1\n")
    config.write_text(
        "server:\n"
        f'  root-hints: "{hints}"\n'
        f"  interface: 127.0.0.1@{port}\n"
        "  access-control: 127.0.0.0/8 allow\n"
        "  do-not-query-localhost: no\n"
        '  domain-insecure: "mesh"\n'
        '  module-config: "iterator"\n'
        '  username: ""\n  chroot: ""\n'
        f'  directory: "{tmp_path}"\n  pidfile: "{tmp_path / "unbound.pid"}"\n'
        '  use-syslog: no\n  logfile: ""\n  verbosity: 1\n'
        "  do-ip6: no\n"
        "remote-control:\n  control-enable: no\n"
        + UNBOUND_ZONES[zone].format(port=meshdns.dns_port)
    )
    log = tmp_path / "unbound.log"
    with log.open("w") as out:
        process = subprocess.Popen([unbound, "-d", "-c", str(config)], stdout=out, stderr=out)
    try:
        wait_for_port(port, process, log)
        through = answers(dig(port, "backend.mesh"))
        assert [record[3] for record in through] == [vip(meshdns)]
        assert status(dig(port, "nosuch.mesh")) == "NXDOMAIN"
        srv = answers(dig(port, "_backend._tcp.mesh", "SRV"))
        assert len(srv) == 2
    finally:
        process.terminate()
        process.wait(10)


def test_dnsmasq_in_front(meshdns, tmp_path):
    """Issue 4, acceptance 3: dnsmasq with server=/mesh/127.0.0.1#PORT."""
    dnsmasq = require_tool("dnsmasq")
    port = free_port()
    log = tmp_path / "dnsmasq.log"
    command = [
        dnsmasq,
        "--no-daemon",
        "--conf-file=/dev/null",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        f"--server=/mesh/127.0.0.1#{meshdns.dns_port}",
    ]
    if os.geteuid() == 0:
        command.append("--user=root")
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out)
    try:
        wait_for_port(port, process, log)
        assert [record[3] for record in answers(dig(port, "backend.mesh"))] == [vip(meshdns)]
        assert status(dig(port, "nosuch.mesh")) == "NXDOMAIN"
    finally:
        process.terminate()
        process.wait(10)


NAMESPACE_SCRIPT = """
set -eu
ip link set lo up
mount --bind "$RESOLV_CONF" /etc/resolv.conf
"$MESHDNS" serve --dns-port 53 --api-port "$API_PORT" --database-url "$DATABASE_URL" \
    >"$LOG" 2>&1 &
server=$!
trap 'kill $server; wait $server || true' EXIT
for _ in $(seq 1 200); do
    if getent hosts backend.mesh >/dev/null; then break; fi
    sleep 0.1
done
echo "hosts: $(getent hosts backend.mesh)"
echo "srv-target: $(getent hosts 7f002801.addr.mesh)"
getent hosts nosuch.mesh >/dev/null && echo "nosuch: found" || echo "nosuch: $?"
"""


def test_glibc_resolver_with_resolv_conf(meshdns, tmp_path):
    """Issue 4, acceptance 3: getent (glibc) with `nameserver 127.0.0.1` in resolv.conf.

    resolv.conf has no port, so meshdns must listen on 53: in a network namespace of
    its own (only loopback inside), with a resolv.conf bind-mounted in a mount namespace.
    """
    unshare = require_tool("unshare")
    require_tool("ip")
    require_tool("getent")
    if os.geteuid() != 0:
        message = "network namespaces need root"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    env = {
        **os.environ,
        "RESOLV_CONF": str(resolv),
        "MESHDNS": MESHDNS,
        "API_PORT": str(free_port()),
        "DATABASE_URL": meshdns.database_url,
        "LOG": str(tmp_path / "meshdns-ns.log"),
    }
    done = subprocess.run(
        [unshare, "--net", "--mount", "sh", "-c", NAMESPACE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    detail = done.stdout + done.stderr + (tmp_path / "meshdns-ns.log").read_text()
    assert done.returncode == 0, detail
    backend = vip(meshdns)
    assert f"hosts: {backend}" in done.stdout and "backend.mesh" in done.stdout, detail
    assert "srv-target: 127.0.40.1" in done.stdout, detail
    # getaddrinfo (getent ahosts) is left out: with only loopback in the namespace,
    # its AI_ADDRCONFIG finds no IPv4 configured and asks nothing.
    assert "nosuch: 2" in done.stdout, detail  # glibc's "not found"
