"""Names outside the zone: forwarded upstream for clients allowed to recurse, REFUSED for
everyone else. Real sockets: a DnsServer and a stub upstream on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from ipaddress import ip_address, ip_network

import dns.flags
import dns.message
import dns.rcode
import pytest

from dnsserver import DnsServer, Handler
from dnsserver.forward import Forwarder, UpstreamServer
from tests.dns.dnstesting import (
    dns_server,
    mesh,
    parse,
    query,
    rcode,
    rdatas,
    service,
    snapshot,
    standard_config,
    standard_snapshot,
)
from tests.dns.stubupstream import UPSTREAM_A, StubUpstream

ALLOWED = "127.0.0.1"
OUTSIDER = "127.0.0.2"  # outside the ACL, not a dataplane
DATAPLANE = "127.0.0.3"  # outside the ACL, but a registered dataplane


def forwarding_handler(**config) -> Handler:
    settings = {"allow_recursion": (ip_network("127.0.0.1/32"),), **config}
    base = standard_snapshot()
    view = snapshot(*base.meshes.values(), clients={DATAPLANE: "default"})
    return Handler(standard_config(**settings), view, forwarding=True)


@pytest.fixture(scope="module")
def upstream() -> Iterator[StubUpstream]:
    with StubUpstream() as stub:
        yield stub


@pytest.fixture
async def server(upstream) -> AsyncIterator[DnsServer]:
    forwarder = Forwarder([UpstreamServer.parse(upstream.address)])
    async with dns_server(forwarding_handler(), forwarder=forwarder) as server:
        yield server
    await forwarder.close()


async def exchange(
    server: DnsServer, data: bytes, *, source: str = ALLOWED, tcp: bool = False
) -> dns.message.Message:
    """Send ``data`` from ``source`` (a loopback address) and parse the reply."""
    return parse(await asyncio.to_thread(_blocking_exchange, server.port, data, source, tcp))


def _blocking_exchange(port: int, data: bytes, source: str, tcp: bool) -> bytes:
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(10)
        sock.bind((source, 0))
        if not tcp:
            sock.sendto(data, ("127.0.0.1", port))
            return sock.recv(65535)
        sock.connect(("127.0.0.1", port))
        sock.sendall(len(data).to_bytes(2, "big") + data)
        length = int.from_bytes(_read(sock, 2), "big")
        return _read(sock, length)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


@pytest.mark.parametrize("tcp", [False, True])
@pytest.mark.parametrize(
    ("name", "rdtype", "rcode_text", "answer"),
    [
        ("example.com.", "A", "NOERROR", [UPSTREAM_A]),
        ("Example.COM.", "A", "NOERROR", [UPSTREAM_A]),
        ("www.example.com.", "A", "NOERROR", ["example.com.", UPSTREAM_A]),  # CNAME chain
        ("mx.example.com.", "MX", "NOERROR", ["10 mail.example.com."]),
        ("example.com.", "AAAA", "NOERROR", []),
        ("nx.example.com.", "A", "NXDOMAIN", []),
        ("fail.example.com.", "A", "SERVFAIL", []),
        # A reverse name we do not hold is outside the zone like any other.
        ("9.9.9.10.in-addr.arpa.", "PTR", "NXDOMAIN", []),
    ],
)
async def test_allowed_client_gets_the_upstream_answer(
    server, name, rdtype, rcode_text, answer, tcp
):
    reply = await exchange(server, query(name, rdtype, edns=0, qid=777), tcp=tcp)
    assert rcode(reply) == rcode_text
    assert rdatas(reply.answer) == answer
    assert reply.id == 777
    assert reply.question[0].name.to_text() == name  # asked case kept
    assert {"RA", "RD"} <= set(dns.flags.to_text(reply.flags).split())
    assert not reply.flags & dns.flags.AA
    assert reply.edns == 0 and reply.payload == 1232


@pytest.mark.parametrize(
    ("source", "name", "rd", "rcode_text", "ra"),
    [
        (OUTSIDER, "example.com.", True, "REFUSED", False),
        (OUTSIDER, "9.9.9.10.in-addr.arpa.", True, "REFUSED", False),
        # Registered dataplanes may recurse by default.
        (DATAPLANE, "example.com.", True, "NOERROR", True),
        # Without RD nothing is forwarded, even for allowed clients.
        (ALLOWED, "example.com.", False, "REFUSED", True),
        # In-zone names answer everyone; RA tells who could recurse.
        (OUTSIDER, "web.mesh.", True, "NOERROR", False),
        (ALLOWED, "web.mesh.", True, "NOERROR", True),
    ],
)
async def test_recursion_acl(server, source, name, rd, rcode_text, ra):
    reply = await exchange(server, query(name, rd=rd), source=source)
    assert rcode(reply) == rcode_text
    assert bool(reply.flags & dns.flags.RA) == ra
    if rcode_text == "REFUSED":
        assert reply.answer == []


async def test_udp_answer_too_big_is_truncated_tcp_is_whole(server):
    udp = await exchange(server, query("big.example.com.", edns=0, payload=1232))
    assert udp.flags & dns.flags.TC and 0 < len(rdatas(udp.answer)) < 200
    tcp = await exchange(server, query("big.example.com.", edns=0), tcp=True)
    assert not tcp.flags & dns.flags.TC and len(rdatas(tcp.answer)) == 200


async def test_silent_upstream_gives_servfail_and_blocks_nobody():
    with StubUpstream(silent=True) as silent:
        forwarder = Forwarder([UpstreamServer.parse(silent.address)])
        async with dns_server(forwarding_handler(), forwarder=forwarder) as server:
            waiting = asyncio.create_task(exchange(server, query("example.com.")))
            # While the forwarded question waits, in-zone questions are answered.
            local = await exchange(server, query("web.mesh."))
            assert rdatas(local.answer) == ["240.0.0.2"]
            assert not waiting.done()
            reply = await waiting
            assert rcode(reply) == "SERVFAIL"
            assert reply.flags & dns.flags.RA
        await forwarder.close()
        assert "example.com." in silent.queries  # it was asked, and never answered


@pytest.mark.parametrize(
    ("allow", "dataplanes", "client", "allowed"),
    [
        (("127.0.0.0/8", "::1/128"), True, "127.9.9.9", True),
        (("127.0.0.0/8", "::1/128"), True, "::1", True),
        (("127.0.0.0/8", "::1/128"), True, "192.0.2.1", False),
        (("10.0.0.0/8",), True, "10.1.2.3", True),
        (("10.0.0.0/8",), True, "10.7.0.1", True),
        ((), True, "10.7.0.1", True),  # a dataplane
        ((), False, "10.7.0.1", False),
        ((), True, "127.0.0.1", False),
    ],
)
def test_who_may_recurse(allow, dataplanes, client, allowed):
    handler = Handler(
        standard_config(
            allow_recursion=tuple(ip_network(cidr) for cidr in allow),
            recursion_for_dataplanes=dataplanes,
        ),
        snapshot(mesh("default", service("web", "240.0.0.2")), clients={"10.7.0.1": "default"}),
        forwarding=True,
    )
    assert handler.may_recurse(ip_address(client)) == allowed


def test_without_upstreams_nobody_recurses():
    handler = Handler(standard_config(), standard_snapshot())
    assert not handler.may_recurse(ip_address("127.0.0.1"))
    reply = parse(handler.handle(query("example.com."), ip_address("127.0.0.1")))
    assert rcode(reply) == "REFUSED"
    assert not reply.flags & dns.flags.RA


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.2", "10.0.0.2:53"),
        ("10.0.0.2:5353", "10.0.0.2:5353"),
        ("::1", "[::1]:53"),
        ("[::1]:5353", "[::1]:5353"),
    ],
)
def test_upstream_addresses(text, expected):
    assert str(UpstreamServer.parse(text)) == expected


@pytest.mark.parametrize("text", ["example.com", "10.0.0.2:0", "10.0.0.2:x", "[::1]x", ""])
def test_bad_upstream_addresses(text):
    from dnsserver import ConfigError

    with pytest.raises(ConfigError):
        UpstreamServer.parse(text)
