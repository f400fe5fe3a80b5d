"""The UDP/TCP transport, run for real on a free port."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.flags
import dns.message
import pytest

from dnsserver import BindError, DnsServer, Handler
from tests.dns.dnstesting import (
    dns_limits,
    dns_server,
    mesh,
    parse,
    query,
    rcode,
    rdatas,
    service,
    snapshot,
    standard_handler,
    zone_config,
)

# Generous bound on waiting for the server; no test asserts on timing.
PATIENCE = 5.0


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    async with dns_server(standard_handler()) as server:
        yield server


def framed(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


async def read_framed(reader: asyncio.StreamReader) -> bytes:
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    return await reader.readexactly(length)


async def udp(server: DnsServer, name: str, rdtype: str = "A") -> dns.message.Message:
    request = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(request, server.host, port=server.port, timeout=PATIENCE)


async def test_udp_query(server):
    reply = await udp(server, "web.mesh.")
    assert rdatas(reply.answer) == ["240.0.0.2"]
    assert reply.flags & dns.flags.AA


async def test_udp_truncates_and_tcp_does_not(server):
    request = dns.message.make_query("big.endpoints.mesh.", "A")
    over_udp = await dns.asyncquery.udp(request, server.host, port=server.port, timeout=PATIENCE)
    assert over_udp.flags & dns.flags.TC
    over_tcp = await dns.asyncquery.tcp(request, server.host, port=server.port, timeout=PATIENCE)
    assert len(rdatas(over_tcp.answer)) == 300


async def test_tcp_pipelined_queries_answered_in_order(server):
    names = ["web.mesh.", "nope.mesh.", "backend.mesh.", "big.endpoints.mesh.", "mesh."]
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(b"".join(framed(query(name, qid=i)) for i, name in enumerate(names)))
        await writer.drain()
        replies = [parse(await read_framed(reader)) for _ in names]
    finally:
        writer.close()
        await writer.wait_closed()
    assert [reply.id for reply in replies] == list(range(len(names)))
    assert [rcode(reply) for reply in replies] == [
        "NOERROR",
        "NXDOMAIN",
        "NOERROR",
        "NOERROR",
        "NOERROR",
    ]


async def test_garbage_does_not_stop_the_server(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for garbage in (b"", b"\x00", b"\xff" * 12, b"\x00" * 12, b"\x12\x34" + b"\xff" * 500):
            sock.sendto(garbage, (server.host, server.port))
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        # A frame too short to be a message is dropped; the connection goes on.
        writer.write(framed(b"abc") + framed(b"\xff" * 40) + framed(query("web.mesh.", qid=7)))
        await writer.drain()
        reply = parse(await asyncio.wait_for(read_framed(reader), PATIENCE))
    finally:
        writer.close()
        await writer.wait_closed()
    assert reply.id == 7
    assert rdatas((await udp(server, "web.mesh.")).answer) == ["240.0.0.2"]


async def test_answers_in_the_mesh_of_the_client_address():
    # The test's client is 127.0.0.1, a resolver address by default: none here.
    handler = Handler(
        zone_config(resolver_addresses=frozenset()),
        snapshot(
            mesh("default", service("web", "240.0.0.2")),
            mesh("other", service("web", "240.1.0.2")),
            clients={"127.0.0.1": "other"},
        ),
    )
    async with dns_server(handler) as server:
        assert rdatas((await udp(server, "web.mesh.")).answer) == ["240.1.0.2"]


async def test_idle_tcp_connection_is_closed():
    async with dns_server(standard_handler(), limits=dns_limits(tcp_idle_timeout=0.1)) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
        writer.close()
        await writer.wait_closed()


async def test_a_connection_over_the_limit_closes_the_idle_one():
    async with dns_server(standard_handler(), limits=dns_limits(tcp_max_connections=1)) as server:
        first_reader, first = await asyncio.open_connection(server.host, server.port)
        first.write(framed(query("web.mesh.", qid=1)))
        assert parse(await asyncio.wait_for(read_framed(first_reader), PATIENCE)).id == 1
        second_reader, second = await asyncio.open_connection(server.host, server.port)
        second.write(framed(query("web.mesh.", qid=2)))
        assert parse(await asyncio.wait_for(read_framed(second_reader), PATIENCE)).id == 2
        assert await asyncio.wait_for(first_reader.read(), PATIENCE) == b""
        for writer in (first, second):
            writer.close()
            await writer.wait_closed()


async def test_close_ends_idle_connections():
    server = dns_server(standard_handler())
    await server.start()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(framed(query("web.mesh.", qid=1)))
    await read_framed(reader)
    await asyncio.wait_for(server.close(), PATIENCE)
    assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
    writer.close()
    await writer.wait_closed()


async def test_address_in_use_is_a_bind_error():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(BindError, match=f"port {port}"):
            await dns_server(standard_handler(), port=port).start()


async def test_ipv6_host():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = dns_server(standard_handler(), host="::1")
        await server.start()
    except BindError as error:
        pytest.skip(f"cannot bind ::1: {error}")
    try:
        assert rdatas((await udp(server, "web.mesh.")).answer) == ["240.0.0.2"]
        request = dns.message.make_query("web.mesh.", "AAAA")
        reply = await dns.asyncquery.tcp(request, "::1", port=server.port, timeout=PATIENCE)
        assert rdatas(reply.answer) == ["fd00::2"]
    finally:
        await server.close()
