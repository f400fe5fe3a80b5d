"""Real DNS clients (dig, kdig) against a DnsServer over UDP and TCP."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from dnstesting import BIG_ENDPOINTS, REVISION, standard_handler

from dnsserver import DnsServer

pytestmark = pytest.mark.interop

# One try, bounded wait: the two clients spell these differently.
CLIENT_OPTIONS = {"dig": ["+tries=1", "+time=5"], "kdig": ["+retry=0", "+timeout=5"]}
CLIENTS = list(CLIENT_OPTIONS)


@dataclass
class Reply:
    """What a client printed, read back: status, header flags and records per section."""

    status: str
    flags: set[str]
    sections: dict[str, list[list[str]]]


class ServerThread:
    """A DnsServer on a free port, on its own event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = DnsServer(standard_handler(), port=0)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> DnsServer:
        self.thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=10)
        except BaseException:
            self._stop_loop()
            raise
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=10)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with ServerThread() as server:
        yield server


def client_path(client: str) -> str:
    path = shutil.which(client)
    if path is None:
        message = f"{client} is not installed (apt-get install dnsutils knot-dnsutils)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(client: str, server: DnsServer, name: str, rdtype: str, *options: str) -> Reply:
    command = [client_path(client), f"@{server.host}", "-p", str(server.port), name, rdtype]
    command += [*CLIENT_OPTIONS[client], *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return read_output(done.stdout)


def read_output(output: str) -> Reply:
    """Read dig's or kdig's output; they differ in punctuation, not in substance."""
    status = re.search(r"status: (\w+)", output)
    flags = re.search(r";; flags: ([a-z ]*);", output, re.IGNORECASE)
    assert status and flags, output
    sections: dict[str, list[list[str]]] = {"ANSWER": [], "AUTHORITY": [], "ADDITIONAL": []}
    current = None
    for line in output.splitlines():
        heading = re.match(r";; (\w+) SECTION:", line)
        if heading:
            current = heading.group(1)
        elif not line.strip():
            current = None
        elif current in sections and not line.startswith(";"):
            sections[current].append(line.split())
    return Reply(status.group(1), set(flags.group(1).split()), sections)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
class TestAnswers:
    def test_service_a_is_authoritative(self, server, client, transport):
        reply = run(client, server, "web.mesh", "A", transport)
        assert (reply.status, "aa" in reply.flags) == ("NOERROR", True)
        assert reply.sections["ANSWER"] == [["web.mesh.", "30", "IN", "A", "240.0.0.2"]]

    def test_nxdomain_has_soa_in_authority(self, server, client, transport):
        reply = run(client, server, "nope.mesh", "A", transport)
        assert reply.status == "NXDOMAIN"
        assert reply.sections["ANSWER"] == []
        soa = ["ns.mesh.", "hostmaster.mesh.", str(REVISION), "3600", "600", "86400", "30"]
        assert reply.sections["AUTHORITY"] == [["mesh.", "30", "IN", "SOA", *soa]]

    def test_aaaa_without_ipv6_vip_is_nodata(self, server, client, transport):
        reply = run(client, server, "backend.mesh", "AAAA", transport)
        assert (reply.status, reply.sections["ANSWER"]) == ("NOERROR", [])
        assert [record[3] for record in reply.sections["AUTHORITY"]] == ["SOA"]

    def test_outside_the_zone_is_refused(self, server, client, transport):
        reply = run(client, server, "example.com", "A", transport)
        assert reply.status == "REFUSED"
        assert "aa" not in reply.flags


@pytest.mark.parametrize("client", CLIENTS)
def test_large_answer_truncated_over_udp(server, client):
    reply = run(client, server, "big.endpoints.mesh", "A", "+notcp", "+ignore")
    assert "tc" in reply.flags
    assert 0 < len(reply.sections["ANSWER"]) < BIG_ENDPOINTS


@pytest.mark.parametrize("client", CLIENTS)
def test_large_answer_complete_over_tcp(server, client):
    reply = run(client, server, "big.endpoints.mesh", "A", "+tcp")
    assert "tc" not in reply.flags
    assert len(reply.sections["ANSWER"]) == BIG_ENDPOINTS
