"""Hundreds of endpoints: UDP answers fit the client's EDNS size with TC set, TCP answers
are complete, and no message is ever malformed or oversized.

The TCP arithmetic (a message is at most 65535 bytes): an SRV record for an IPv4 target
takes 38 bytes (owner pointer 2, fixed fields 10, priority/weight/port 6, target
``<8 hex>.addr.mesh.`` uncompressed as RFC 2782 asks, 20) and its address record 25
(``<8 hex>`` plus a pointer, fixed 10, address 4); for IPv6, 62 and 61. So 500 IPv6
endpoints take about 61.5 kB with every additional record: all fit. Past about 1,000
IPv6 or 1,700 IPv4 endpoints the SRV records alone outgrow a TCP message; then the
answer is cut with TC even over TCP, which is the most DNS can carry.
"""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address, IPv6Address

import dns.asyncquery
import dns.flags
import dns.message
import pytest

from dnsserver import Handler
from tests.dns.dnstesting import (
    OUTSIDER,
    dns_server,
    endpoint,
    mesh,
    parse,
    query,
    service,
    snapshot,
    zone_config,
)

COUNT = 500


def endpoints(count: int, *, ipv6: bool = False):
    if ipv6:
        return tuple(endpoint(str(IPv6Address(0xFD00 << 112 | i + 1))) for i in range(count))
    return tuple(endpoint(str(IPv4Address(0x0A140000 + i + 1))) for i in range(count))


def handler_with(count: int, *, ipv6: bool = False) -> Handler:
    crowd = service("crowd", "240.0.0.1", endpoints=endpoints(count, ipv6=ipv6))
    return Handler(zone_config(), snapshot(mesh("default", crowd)))


@pytest.fixture(scope="module")
def crowd() -> Handler:
    return handler_with(COUNT)


def srv_count(message: dns.message.Message) -> int:
    return sum(len(rrset) for rrset in message.answer)


@pytest.mark.parametrize(
    ("name", "rdtype"), [("_crowd._tcp.mesh.", "SRV"), ("crowd.endpoints.mesh.", "A")]
)
@pytest.mark.parametrize(
    ("edns", "payload", "limit"), [(0, 1232, 1232), (0, 4096, 1232), (None, 0, 512), (0, 600, 600)]
)
def test_udp_fits_the_client_size_with_tc(crowd, name, rdtype, edns, payload, limit):
    reply = crowd.handle(query(name, rdtype, edns=edns, payload=payload), OUTSIDER)
    assert reply is not None and len(reply) <= limit
    message = parse(reply)  # parses: valid
    assert message.flags & dns.flags.TC
    assert 0 < srv_count(message) < COUNT
    assert (message.edns == 0) == (edns == 0)


@pytest.mark.parametrize("ipv6", [False, True])
def test_tcp_has_every_srv_and_address(ipv6):
    handler = handler_with(COUNT, ipv6=ipv6)
    reply = handler.handle(query("_crowd._tcp.mesh.", "SRV", edns=0), OUTSIDER, tcp=True)
    assert reply is not None and len(reply) <= 65535
    message = parse(reply)
    assert not message.flags & dns.flags.TC
    assert srv_count(message) == COUNT
    assert sum(len(rrset) for rrset in message.additional) == COUNT


def test_tcp_beyond_one_message_is_cut_not_broken():
    handler = handler_with(1500, ipv6=True)
    reply = handler.handle(query("_crowd._tcp.mesh.", "SRV"), OUTSIDER, tcp=True)
    assert reply is not None and len(reply) <= 65535
    message = parse(reply)
    assert message.flags & dns.flags.TC
    assert 1000 < srv_count(message) < 1500
    assert message.additional == []  # additional records go first


def test_additional_records_that_do_not_fit_are_dropped_without_tc():
    """RFC 2181 9: twelve IPv6 SRV records fit 1232 bytes, all their addresses do not."""
    handler = handler_with(12, ipv6=True)
    reply = handler.handle(query("_crowd._tcp.mesh.", "SRV", edns=0), OUTSIDER)
    assert reply is not None and len(reply) <= 1232
    message = parse(reply)
    assert not message.flags & dns.flags.TC
    assert srv_count(message) == 12
    assert 0 < sum(len(rrset) for rrset in message.additional) < 12


async def test_acceptance_500_srv_over_real_udp_and_tcp(crowd):
    """Issue 4, acceptance 2, over real sockets: UDP at EDNS 1232, then TCP."""
    request = dns.message.make_query("_crowd._tcp.mesh.", "SRV", use_edns=0, payload=1232)
    async with dns_server(crowd) as server:
        loop = asyncio.get_running_loop()
        wire = await loop.run_in_executor(None, _udp_exchange, request.to_wire(), server.port)
        assert len(wire) < 1232
        udp = parse(wire)
        assert udp.flags & dns.flags.TC
        assert 0 < srv_count(udp) < COUNT
        tcp = await dns.asyncquery.tcp(request, "127.0.0.1", port=server.port, timeout=5)
        assert not tcp.flags & dns.flags.TC
        assert srv_count(tcp) == COUNT


def _udp_exchange(data: bytes, port: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(data, ("127.0.0.1", port))
        return udp.recv(65535)
