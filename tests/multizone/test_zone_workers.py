"""A zone control plane with DNS workers (`--mode zone --dns-workers 2`): every DNS
process gives the same answers, cross-zone names included.

Each process follows the registry itself, so each must know which zone is its own: an
egress of this zone carries the traffic to services of other zones, and a process that
took it for another zone's would answer those services with the remote ingress instead.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import dns.message
import dns.query
import dns.rcode
import httpx
import pytest

from registry.schema import parse_resource
from registry.store import Store
from registry.store.database import create_engine
from registry.write_rules import ZONE, Origin
from tests.factories import dataplane
from tests.helpers import Meshdns
from tests.serve_settings import vip_settings

pytestmark = pytest.mark.integration

LOCAL_ZONE = "zone-a"
WEB_ADDRESS = "127.0.0.22"  # the client: a dataplane of service web, in this zone
EGRESS_ADDRESS = "127.0.0.31"  # this zone's egress
EGRESS_PORT = 10003
INGRESS_ADDRESS = "127.0.0.41"  # zone-b's ingress, as replicated here
INGRESS_PUBLIC = "127.0.0.42"
INGRESS_PUBLIC_PORT = 10002
PATIENCE = 10.0  # seconds a worker may take to follow a write
MTLS = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}
QUESTIONS = [
    ("web.mesh.", "A"),  # a local service
    ("web.endpoints.mesh.", "A"),
    ("faraway.mesh.", "A"),  # a service of zone-b
    ("faraway.endpoints.mesh.", "A"),
    ("_faraway._tcp.mesh.", "SRV"),
]


async def replicate_from_global(url: str) -> None:
    """Write what the sync worker brings a zone from global: the mesh (with mTLS), a
    permission for web, and zone-b's ingress offering `faraway`."""
    replicated = [
        {"type": "Mesh", "name": "default", "mtls": MTLS},
        {
            "type": "TrafficPermission",
            "mesh": "default",
            "name": "web-to-faraway",
            "sources": [{"match": {"kuma.io/service": "web"}}],
            "destinations": [{"match": {"kuma.io/service": "faraway"}}],
        },
        {
            "type": "ZoneIngress",
            "name": "zone-b.ingress-1",
            "zone": "zone-b",
            "networking": {
                "address": INGRESS_ADDRESS,
                "port": 10001,
                "advertisedAddress": INGRESS_PUBLIC,
                "advertisedPort": INGRESS_PUBLIC_PORT,
            },
            "availableServices": [
                {"tags": {"kuma.io/service": "faraway"}, "instances": 1, "mesh": "default"}
            ],
        },
    ]
    engine = create_engine(url)
    try:
        store = Store(engine, vip_settings(), mode=ZONE)
        async with store.writing(Origin.REPLICATION) as transaction:
            for document in replicated:
                await store.put_in(transaction, parse_resource(document))
    finally:
        await engine.dispose()


def ask(sock: socket.socket, port: int, name: str, rdtype: str, rdclass: str = "IN"):
    request = dns.message.make_query(name, rdtype, rdclass=rdclass)
    return dns.query.udp(request, "127.0.0.1", port=port, timeout=2, sock=sock)


def answer(sock: socket.socket, port: int, name: str, rdtype: str) -> tuple[str, list[str]]:
    reply = ask(sock, port, name, rdtype)
    records = sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)
    return dns.rcode.to_text(reply.rcode()), records


def client_sockets(count: int) -> list[socket.socket]:
    """UDP sockets of the web dataplane's address, each on its own port."""
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((WEB_ADDRESS, 0))
        sock.setblocking(False)  # dnspython waits with select; a blocking socket would hang
        sockets.append(sock)
    return sockets


def test_every_dns_process_of_a_zone_answers_alike(
    start_meshdns: Callable[..., Meshdns], database_url: str
) -> None:
    asyncio.run(replicate_from_global(database_url))
    server = start_meshdns(
        database_url, "--mode", "zone", "--zone", LOCAL_ZONE, "--dns-workers", "2"
    )
    local = [
        dataplane("web-1", WEB_ADDRESS, "web"),
        {
            "type": "ZoneEgress",
            "name": "egress-1",
            "zone": LOCAL_ZONE,
            "networking": {"address": EGRESS_ADDRESS, "port": EGRESS_PORT},
        },
    ]
    applied = httpx.post(server.api + "/apply", json={"items": local}, timeout=30)
    assert applied.status_code == 200, applied.text

    sockets = client_sockets(64)
    try:
        # SO_REUSEPORT spreads clients by address and port: find a socket each process
        # answers (`id.server.` says which).
        by_process: dict[str, socket.socket] = {}
        for sock in sockets:
            reply = ask(sock, server.dns_port, "id.server.", "TXT", "CH")
            by_process.setdefault(reply.answer[0][0].to_text(), sock)
        assert set(by_process) == {'"meshdns-0"', '"meshdns-1"'}

        def answers(name: str, rdtype: str) -> dict[str, tuple[str, list[str]]]:
            return {
                process: answer(sock, server.dns_port, name, rdtype)
                for process, sock in by_process.items()
            }

        # The serve process has the egress at once (it answers a write once its DNS has
        # it); the worker, within its follower's poll.
        assert answers("faraway.endpoints.mesh.", "A")['"meshdns-0"'] == (
            "NOERROR",
            [EGRESS_ADDRESS],
        )

        def differing() -> dict[tuple[str, str], dict[str, tuple[str, list[str]]]]:
            asked = {question: answers(*question) for question in QUESTIONS}
            return {
                question: replies
                for question, replies in asked.items()
                if len({repr(reply) for reply in replies.values()}) > 1
            }

        deadline = time.monotonic() + PATIENCE
        while (different := differing()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not different, f"DNS processes answer differently: {different}"
        for name, rdtype in QUESTIONS:
            status, records = answers(name, rdtype)['"meshdns-0"']
            assert status == "NOERROR" and records, (name, rdtype, status)
        srv = answers("_faraway._tcp.mesh.", "SRV")['"meshdns-0"'][1]
        assert [record.split()[2] for record in srv] == [str(EGRESS_PORT)]
    finally:
        for sock in sockets:
            sock.close()
    assert server.stop() == 0
