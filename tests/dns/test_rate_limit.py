"""DNS abuse resistance (issue 8): response rate limiting with slip, TCP connection limits.

The bucket and the slip are tested with a clock the test moves; the transport on a
real server on a free loopback port, asked from other loopback addresses.
"""

from __future__ import annotations

import asyncio
import random
import re
import resource
import socket
import struct
from ipaddress import ip_address, ip_network

import dns.flags
import dns.message
import pytest

from dnsserver import ConfigError, DnsServer
from dnsserver.ratelimit import RateLimiter, slip_reply
from tests.dns.dnstesting import (
    dns_limits,
    dns_server,
    parse,
    query,
    rcode,
    rdatas,
    standard_handler,
)
from tests.helpers import require_tool

PATIENCE = 5.0
ANSWER = re.compile(r"^web\.mesh\.\s+\d+\s+IN\s+A\s+240\.0\.0\.2$", re.MULTILINE)
FLOODER = "127.0.0.2"
BYSTANDER = "127.0.0.3"


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(rate: int, **options: object) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(rate, clock=clock, **options), clock  # type: ignore[arg-type]


def allowed(rate_limiter: RateLimiter, host: str, count: int) -> int:
    return sum(rate_limiter.allow(host) for _ in range(count))


# -- the bucket --------------------------------------------------------------------------


def test_a_burst_of_one_second_then_the_rate():
    rate_limiter, clock = limiter(10)
    assert allowed(rate_limiter, "10.0.0.1", 25) == 10
    clock.now += 0.1  # a tenth of a second: one more reply
    assert allowed(rate_limiter, "10.0.0.1", 5) == 1
    clock.now += 0.35
    assert allowed(rate_limiter, "10.0.0.1", 5) == 3
    clock.now += 5  # idle: the bucket is full again, not fuller
    assert allowed(rate_limiter, "10.0.0.1", 25) == 10
    assert rate_limiter.limited == 15 + 4 + 2 + 15


def test_a_steady_flood_gets_the_rate_and_one_burst():
    rate_limiter, clock = limiter(100)
    answered = 0
    for _ in range(10_000):  # 1,000 queries a second for 10 s
        answered += rate_limiter.allow("10.0.0.1")
        clock.now += 0.001
    assert 100 + 100 * 10 - 2 <= answered <= 100 + 100 * 10 + 1


def test_a_client_under_the_rate_is_never_limited():
    rate_limiter, clock = limiter(100)
    for _ in range(2_000):
        assert rate_limiter.allow("10.0.0.1")
        clock.now += 0.0101
    assert rate_limiter.limited == 0


def test_networks_have_buckets_of_their_own():
    rate_limiter, _ = limiter(5)
    assert allowed(rate_limiter, "10.0.0.1", 10) == 5
    assert allowed(rate_limiter, "10.0.0.2", 10) == 5
    assert rate_limiter.networks == 2


@pytest.mark.parametrize(
    ("ipv4_prefix", "ipv6_prefix", "first", "second", "shared"),
    [
        (32, 64, "10.0.0.1", "10.0.0.2", False),
        (24, 64, "10.0.0.1", "10.0.0.200", True),
        (24, 64, "10.0.0.1", "10.0.1.1", False),
        (0, 64, "10.0.0.1", "192.0.2.1", True),
        (32, 64, "2001:db8::1", "2001:db8::ffff:1", True),
        (32, 64, "2001:db8::1", "2001:db8:0:1::1", False),
        (32, 128, "2001:db8::1", "2001:db8::2", False),
        (32, 64, "fe80::1%eth0", "fe80::2%lo", True),
        # An IPv4 client on a dual-stack socket is the IPv4 client.
        (32, 64, "::ffff:10.0.0.1", "10.0.0.1", True),
        # IPv6 networks never meet IPv4 ones, even when the numbers agree.
        (32, 0, "::", "0.0.0.0", False),
    ],
)
def test_client_networks(ipv4_prefix, ipv6_prefix, first, second, shared):
    rate_limiter, _ = limiter(3, ipv4_prefix=ipv4_prefix, ipv6_prefix=ipv6_prefix)
    assert allowed(rate_limiter, first, 3) == 3
    assert allowed(rate_limiter, second, 3) == (0 if shared else 3)


def test_network_of_a_client():
    rate_limiter, _ = limiter(3, ipv4_prefix=24, ipv6_prefix=48)
    assert rate_limiter.network("10.1.2.3") == ip_network("10.1.2.0/24")
    assert rate_limiter.network("2001:db8:1:2::3") == ip_network("2001:db8:1::/48")


def test_a_random_source_flood_keeps_the_table_bounded_and_the_flooder_limited():
    rate_limiter, clock = limiter(50, max_networks=1_000)
    rng = random.Random(8)
    flooder_answered = 0
    for step in range(50_000):  # 5 s: 10,000 queries a second
        if step % 10 == 0:
            flooder_answered += rate_limiter.allow("192.0.2.66")
        else:
            rate_limiter.allow(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}")
        assert rate_limiter.networks <= 1_000
        clock.now += 0.0001
    # Each random source sent one query: its bucket was full again at once and could be
    # dropped without losing anything, so the flooder's bucket was never forgotten.
    assert rate_limiter.evicted == 0
    assert flooder_answered <= 50 + 50 * 5 + 1


def test_when_every_network_is_over_its_limit_the_oldest_are_forgotten():
    rate_limiter, _ = limiter(1, max_networks=100)
    for number in range(150):
        rate_limiter.allow(f"10.0.0.{number}")
        rate_limiter.allow(f"10.0.0.{number}")  # over the limit: kept
    assert rate_limiter.networks <= 100
    assert rate_limiter.evicted >= 50
    assert not rate_limiter.allow("10.0.0.149")  # the newest are still known


@pytest.mark.parametrize("rate", [0, -1])
def test_a_limiter_needs_a_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate)


# -- the slip ----------------------------------------------------------------------------


@pytest.mark.parametrize(("slip", "slipped"), [(0, 0), (1, 12), (2, 6), (3, 4), (5, 2)])
def test_every_slip_th_limited_query_gets_tc(slip, slipped):
    rate_limiter, _ = limiter(4, slip=slip)
    data = query("web.mesh.")
    replies = []
    for _ in range(16):
        if not rate_limiter.allow("10.0.0.1"):
            replies.append(rate_limiter.limited_reply(data))
    assert len(replies) == rate_limiter.limited == 12
    assert sum(reply is not None for reply in replies) == rate_limiter.slipped == slipped
    if slip:
        assert replies[slip - 1] is not None


@pytest.mark.parametrize("edns", [None, 0])
@pytest.mark.parametrize("rd", [True, False])
def test_the_slip_reply_is_the_question_with_tc(edns, rd):
    data = query("WeB.mesh.", "SRV", edns=edns, qid=0xBEEF, rd=rd)
    reply = slip_reply(data)
    assert reply is not None
    message = parse(reply)
    assert message.id == 0xBEEF
    assert rcode(message) == "NOERROR"
    assert message.flags & dns.flags.QR and message.flags & dns.flags.TC
    assert bool(message.flags & dns.flags.RD) == rd
    assert not message.flags & (dns.flags.AA | dns.flags.RA)
    assert message.question[0].to_text() == "WeB.mesh. IN SRV"
    assert message.answer == message.authority == message.additional == []
    assert len(reply) <= len(data)  # never an amplifier


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x12\x34",
        query("web.mesh.")[:12],  # a header, no question
        query("web.mesh.")[:-1],  # the class cut short
        query("web.mesh.")[:15],  # the name cut short
        bytes([0x12, 0x34, 0x81, 0x00]) + query("web.mesh.")[4:],  # a response (QR)
        query("web.mesh.")[:4] + b"\x00\x00" + query("web.mesh.")[6:],  # no question
        query("web.mesh.")[:4] + b"\x00\x02" + query("web.mesh.")[6:],  # two questions
        query("web.mesh.")[:12] + b"\xc0\x0c\x00\x01\x00\x01",  # a compression pointer
    ],
)
def test_no_slip_reply_to_what_is_no_readable_query(data):
    assert slip_reply(data) is None


# -- no amplification from refusals and errors (the rest is in test_truncation, test_any) -


@pytest.mark.parametrize(
    "data",
    [
        query("example.com."),  # outside the zone, not allowed to recurse: REFUSED
        query("example.com.", edns=0),
        query("web.mesh.", rdclass="CH"),  # REFUSED
        query("mesh.", "AXFR"),  # REFUSED
        query("web.mesh.")[:-2] + b"\x00",  # FORMERR
    ],
)
def test_refusals_and_errors_are_no_larger_than_the_query(data):
    reply = standard_handler().handle(data, ip_address("192.0.2.1"))
    assert isinstance(reply, bytes)
    assert rcode(parse(reply)) in ("REFUSED", "FORMERR")
    assert len(reply) <= len(data)


# -- the limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate": -1}, "rate=-1 must be at least 0"),
        ({"slip": -1}, "slip=-1 must be at least 0"),
        ({"ipv4_prefix": 33}, "ipv4_prefix=33 must be between 0 and 32"),
        ({"ipv6_prefix": 129}, "ipv6_prefix=129 must be between 0 and 128"),
        ({"tcp_max_connections": 0}, "tcp_max_connections=0 must be at least 1"),
        ({"tcp_idle_timeout": 0}, "tcp_idle_timeout=0 must be more than 0 seconds"),
    ],
)
def test_invalid_limits(changes, message):
    with pytest.raises(ConfigError, match=message):
        dns_limits(**changes)


# -- on a real server --------------------------------------------------------------------


def udp_socket(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((source, 0))
    sock.setblocking(False)
    return sock


async def burst(server: DnsServer, source: str, count: int, name: str = "web.mesh.") -> list:
    """Send ``count`` queries at once from ``source``; the replies that came back."""
    loop = asyncio.get_running_loop()
    with udp_socket(source) as sock:
        for qid in range(count):
            sock.sendto(query(name, qid=qid), (server.host, server.port))
        replies = []
        while True:
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.5)
            except TimeoutError:
                return replies
            replies.append(parse(data))


async def tcp_exchange(server: DnsServer, source: str, data: bytes) -> dns.message.Message:
    reader, writer = await asyncio.open_connection(server.host, server.port, local_addr=(source, 0))
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), PATIENCE))
        return parse(await reader.readexactly(length))
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_flood_is_limited_slips_tc_and_the_client_gets_its_answer_over_tcp():
    limits = dns_limits(rate=20, slip=2)
    async with dns_server(standard_handler(), limits=limits) as server:
        replies = await burst(server, FLOODER, 100)
        answers = [reply for reply in replies if not reply.flags & dns.flags.TC]
        slips = [reply for reply in replies if reply.flags & dns.flags.TC]
        assert 20 <= len(answers) <= 23  # the burst, and what refilled meanwhile
        assert all(rdatas(reply.answer) == ["240.0.0.2"] for reply in answers)
        assert len(slips) == (100 - len(answers)) // 2
        assert all(reply.answer == [] and reply.question for reply in slips)
        # Another client is not limited with the flooder.
        assert len(await burst(server, BYSTANDER, 10)) == 10
        # Over TCP the flooder's question gets its answer: TCP is never rate limited.
        for _ in range(30):
            reply = await tcp_exchange(server, FLOODER, query("web.mesh."))
            assert rdatas(reply.answer) == ["240.0.0.2"]
        stats = server.stats()
    limited = 100 - len(answers)
    assert stats["udp_limited"] == limited
    assert stats["udp_slipped"] == len(slips)
    assert stats["udp_dropped"] == limited - len(slips)
    assert stats["rate_limit_networks"] == 2


async def run_dig(server: DnsServer, *args: str) -> str:
    """The real dig, in a subprocess, while this loop serves it."""
    process = await asyncio.create_subprocess_exec(
        require_tool("dig"),
        f"@{server.host}",
        "-p",
        str(server.port),
        "+time=2",
        "+tries=1",
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    return output.decode()


async def test_dig_limited_over_udp_retries_over_tcp_and_gets_the_answer():
    # Rate 1, slip 1: past its first query each second, every UDP query gets TC.
    async with dns_server(standard_handler(), limits=dns_limits(rate=1, slip=1)) as server:
        for _ in range(3):  # a slow machine may let a second pass before dig asks
            await burst(server, FLOODER, 3)
            output = await run_dig(server, "-b", FLOODER, "web.mesh.")
            if "Truncated, retrying in TCP mode" in output:
                break
        else:
            pytest.fail(f"no UDP query of dig was limited:\n{output}")
        assert "status: NOERROR" in output and ANSWER.search(output), output
        # dig +tcp goes straight to TCP, which is never rate limited.
        for _ in range(5):
            output = await run_dig(server, "-b", FLOODER, "+tcp", "web.mesh.")
            assert ANSWER.search(output), output


async def test_rate_zero_limits_nothing():
    async with dns_server(standard_handler(), limits=dns_limits(rate=0)) as server:
        assert len(await burst(server, FLOODER, 150)) == 150
        assert server.stats()["udp_limited"] == 0


async def test_an_idle_connection_is_closed_and_so_is_a_half_sent_query():
    limits = dns_limits(tcp_idle_timeout=0.2)
    async with dns_server(standard_handler(), limits=limits) as server:
        silent = await asyncio.open_connection(server.host, server.port)
        half_prefix = await asyncio.open_connection(server.host, server.port)
        half_prefix[1].write(b"\x00")
        data = query("web.mesh.")
        slowloris = await asyncio.open_connection(server.host, server.port)
        slowloris[1].write(struct.pack("!H", len(data)) + data[:5])
        for reader, writer in (silent, half_prefix, slowloris):
            assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
            writer.close()
            await writer.wait_closed()
        assert server.stats()["tcp_closed_idle"] == 3
        assert server.stats()["tcp_connections"] == 0


async def test_a_connection_that_keeps_asking_is_not_idle():
    limits = dns_limits(tcp_idle_timeout=0.3)
    async with dns_server(standard_handler(), limits=limits) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        for qid in range(6):  # 1.2 s in all, 0.2 s between queries
            writer.write(struct.pack("!H", len(query("web.mesh."))) + query("web.mesh.", qid=qid))
            (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))
            assert parse(await reader.readexactly(length)).id == qid
            await asyncio.sleep(0.2)
        writer.close()
        await writer.wait_closed()
        assert server.stats()["tcp_closed_idle"] == 0


async def test_idle_connections_make_room_for_new_clients_longest_idle_first(caplog):
    limits = dns_limits(tcp_max_connections=20)
    async with dns_server(standard_handler(), limits=limits) as server:
        idle = []
        for _ in range(50):
            idle.append(await asyncio.open_connection(server.host, server.port))
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        # The 30 that came first were closed for the 30 that came after them.
        closed = [await asyncio.wait_for(reader.read(), PATIENCE) == b"" for reader, _ in idle[:30]]
        assert all(closed)
        reply = await tcp_exchange(server, BYSTANDER, query("web.mesh."))
        assert rdatas(reply.answer) == ["240.0.0.2"]
        stats = server.stats()
        assert stats["tcp_closed_for_room"] == 31
        assert stats["tcp_connections"] <= 20
        for _, writer in idle:
            writer.close()
            await writer.wait_closed()
    # Closed as if the client had left: nothing for asyncio to report as an error.
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []


async def test_the_open_file_limit_is_raised_to_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:  # lower it first, as a default of 1024 would be
        if hard <= 512:
            pytest.skip(f"hard open-file limit {hard}: nothing to raise")
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        async with dns_server(standard_handler()):
            raised = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert raised == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
