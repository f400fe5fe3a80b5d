"""The DNS transport: UDP and TCP listeners on one address that pass bytes to a handler.

Knows nothing of DNS beyond TCP's two-byte length framing (RFC 1035 4.2.2); what
to answer is the :class:`~dnsserver.handler.Handler`'s business. When the handler
hands back a :class:`~dnsserver.forward.Forward`, the transport awaits the
:class:`~dnsserver.forward.Forwarder` for it in a task of its own, so that other
queries are answered meanwhile.

What one client may cost is bounded by :class:`~dnsserver.config.DnsLimits`: UDP
replies per client network (:mod:`dnsserver.ratelimit`, checked before the handler
sees the query, so a flood over the limit costs one table update a query), open TCP
connections (one more closes the longest idle, so idle connections never lock new
clients out) and the time a TCP connection may take to send a whole query (a
half-sent one is idle: slowloris). :meth:`DnsServer.stats` counts what was limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, cast

from dnsserver.config import DnsLimits
from dnsserver.counters import SAMPLE_MASK, DnsCounters
from dnsserver.errors import BindError
from dnsserver.forward import Forward, Forwarder
from dnsserver.handler import Handler, Transfer
from dnsserver.ratelimit import RateLimiter

logger = logging.getLogger("meshdns.dns")

_LENGTH_PREFIX = struct.Struct("!H")
# With port 0, UDP picks a free port and TCP must then get the same one; another
# process may hold it on TCP, so try a few ports.
_EPHEMERAL_BIND_ATTEMPTS = 20
# A UDP receive buffer that holds a burst of some thousand queries while the loop is busy
# elsewhere (a feed batch, an API request) instead of dropping them.
_UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
# Past this many unsent bytes on a TCP connection, wait for the client to read.
_WRITE_BUFFER_HIGH = 64 * 1024
# Connections the kernel completes before we accept them: a burst of new clients waits
# there instead of having its SYNs dropped (and retried a second later).
_TCP_BACKLOG = 1024
# Open files beyond the TCP connections: listeners, the database, logs, upstreams.
_OTHER_FILES = 64
_MOST_FILES = 1 << 20
# How often what was limited is logged (when anything was).
_REPORT_INTERVAL = 10.0


class DnsServer:
    """Serves a :class:`Handler` over UDP and TCP on one host and port."""

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        limits: DnsLimits,
        shutdown_timeout: float = 5.0,
        forwarder: Forwarder | None = None,
        reuse_port: bool = False,
    ) -> None:
        self._handler = handler
        # SO_REUSEPORT: several processes (--dns-workers) share the port on UDP and TCP.
        self._reuse_port = reuse_port
        self._forwarder = forwarder
        self._host = host
        self._port = port
        self._limits = limits
        self._tcp_idle_timeout = limits.tcp_idle_timeout
        self._max_tcp_connections = limits.tcp_max_connections
        self._limiter = (
            RateLimiter(
                limits.rate,
                slip=limits.slip,
                ipv4_prefix=limits.ipv4_prefix,
                ipv6_prefix=limits.ipv6_prefix,
            )
            if limits.rate
            else None
        )
        self._shutdown_timeout = shutdown_timeout
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        # Every connection task, discarded when done. The idle ones are waiting for a
        # query, with their writers, in the order they began to wait (a dict keeps it):
        # the first has been idle longest. They can be closed without losing an answer.
        # Closed, not cancelled: the task then ends as when the client leaves (and
        # Python 3.11's streams would log a cancelled connection task as an error).
        self._connections: set[asyncio.Task[None]] = set()
        self._idle: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        # UDP replies waiting for an upstream, likewise kept until done.
        self._forwarding: set[asyncio.Task[None]] = set()
        self._closing = False
        self._tcp_closed_idle = 0
        self._tcp_closed_for_room = 0
        self._tcp_refused = 0
        self._reporter: asyncio.Task[None] | None = None

    @property
    def counters(self) -> DnsCounters:
        """What was answered (the handler counts) and the sampled latencies (we time)."""
        return self._handler.counters

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The port listened on; with port 0, the one chosen at :meth:`start`."""
        return self._port

    @property
    def limits(self) -> DnsLimits:
        return self._limits

    def stats(self) -> dict[str, int]:
        """What was limited since the start, and what is open now.

        - ``udp_limited``: UDP queries over the rate limit, of which ``udp_slipped`` got
          an empty reply with TC set and ``udp_dropped`` nothing;
        - ``rate_limit_networks``: client networks with a bucket now;
          ``rate_limit_evicted``: networks forgotten early because the table was full;
        - ``tcp_connections``: open now; ``tcp_closed_idle``: closed for sending no
          whole query (or not reading our replies) within the idle timeout;
          ``tcp_closed_for_room``: idle ones closed to let a new client in;
          ``tcp_refused``: new ones closed at the limit, when none was idle.
        """
        limiter = self._limiter
        limited = limiter.limited if limiter else 0
        slipped = limiter.slipped if limiter else 0
        return {
            "udp_limited": limited,
            "udp_slipped": slipped,
            "udp_dropped": limited - slipped,
            "rate_limit_networks": limiter.networks if limiter else 0,
            "rate_limit_evicted": limiter.evicted if limiter else 0,
            "tcp_connections": len(self._connections),
            "tcp_closed_idle": self._tcp_closed_idle,
            "tcp_closed_for_room": self._tcp_closed_for_room,
            "tcp_refused": self._tcp_refused,
        }

    async def start(self) -> None:
        """Listen on UDP and TCP; raise :class:`BindError` when the address is taken."""
        _raise_open_file_limit(self._max_tcp_connections + _OTHER_FILES)
        attempts = _EPHEMERAL_BIND_ATTEMPTS if self._port == 0 else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._bind()
                self._reporter = asyncio.get_running_loop().create_task(self._report())
                return
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE and attempt < attempts:
                    continue
                reason = exc.strerror or exc
                raise BindError(
                    f"cannot listen for DNS on {self._host} port {self._port}: {reason}; "
                    "choose another address or port, or stop the program using it"
                ) from exc

    async def close(self) -> None:
        """Stop listening, let replies in progress finish (within a bound), then cancel."""
        self._closing = True
        if self._reporter is not None:
            self._reporter.cancel()
            self._reporter = None
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for writer in self._idle.values():
            writer.close()
        busy = self._connections | self._forwarding
        if busy:
            _, pending = await asyncio.wait(busy, timeout=self._shutdown_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
        totals = self.stats()
        if any(value for name, value in totals.items() if name != "tcp_connections"):
            logger.info("DNS limits since the start: %s", _describe_stats(totals))

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self._answer, self._forward_udp, self._limiter, self.counters),
            local_addr=(self._host, self._port),
            reuse_port=self._reuse_port or None,
        )
        _enlarge_receive_buffer(udp.get_extra_info("socket"))
        port = udp.get_extra_info("sockname")[1]
        try:
            self._tcp = await asyncio.start_server(
                self._serve_connection,
                self._host,
                port,
                reuse_port=self._reuse_port or None,
                backlog=_TCP_BACKLOG,
            )
        except OSError:
            udp.close()
            raise
        self._udp = udp
        self._port = port

    def _answer(self, data: bytes, client: str, tcp: bool) -> bytes | Forward | Transfer | None:
        # The handler answers SERVFAIL on its own errors; this guard is for a bug
        # in that last resort, so no message can ever stop the server.
        try:
            return self._handler.handle_peer(data, client, tcp=tcp)
        except Exception:
            logger.exception("no reply to a %d-byte message from %s", len(data), client)
            return None

    async def _forward(self, forward: Forward) -> bytes | None:
        if self._forwarder is None:  # the handler was told to forward but we cannot
            logger.error("no forwarder for %s; dropping the query", forward.question)
            return None
        try:
            upstream = await self._forwarder.resolve(forward.question)
            return self._handler.forwarded(forward, upstream)
        except Exception:
            logger.exception("no reply to a forwarded query")
            return None

    def _forward_udp(self, forward: Forward, reply_to: Callable[[bytes], None]) -> None:
        task = asyncio.get_running_loop().create_task(self._send_forwarded(forward, reply_to))
        self._forwarding.add(task)
        task.add_done_callback(self._forwarding.discard)

    async def _send_forwarded(self, forward: Forward, reply_to: Callable[[bytes], None]) -> None:
        reply = await self._forward(forward)
        if reply is not None:
            reply_to(reply)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer the queries of one TCP connection, in order, until it goes idle."""
        task = asyncio.current_task()
        if task is None or self._closing or not self._make_room():
            logger.debug("refusing a TCP connection: at the limit and none idle, or closing")
            writer.close()
            return
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        client = str(writer.get_extra_info("peername")[0])
        counters = self.counters
        try:
            while not self._closing:
                data = await self._read_message(task, reader, writer)
                sampled = len(data) > 1 and not data[1] & SAMPLE_MASK
                started = time.perf_counter() if sampled else 0.0
                reply = self._answer(data, client, True)
                if sampled:
                    counters.observe(time.perf_counter() - started)
                if isinstance(reply, Forward):
                    # In order: one connection's answers keep their queries' order.
                    reply = await self._forward(reply)
                messages = reply.messages if isinstance(reply, Transfer) else (reply,)
                for message in messages:
                    if message is not None:
                        writer.write(_LENGTH_PREFIX.pack(len(message)) + message)
                # Pipelined queries already read are answered before waiting for the
                # client to take the replies: drain only when the buffer is full.
                if writer.transport.get_write_buffer_size() > _WRITE_BUFFER_HIGH:
                    async with asyncio.timeout(self._tcp_idle_timeout):
                        await writer.drain()
        except TimeoutError:
            self._tcp_closed_idle += 1  # no whole query in time, or our replies unread
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()

    def _make_room(self) -> bool:
        """Whether a new connection may be served: under the limit, or once the
        longest idle connection is closed. False at the limit with none idle."""
        if len(self._connections) < self._max_tcp_connections:
            return True
        if not self._idle:
            self._tcp_refused += 1
            return False
        longest_idle, writer = next(iter(self._idle.items()))
        del self._idle[longest_idle]
        # Out of the count now: its task ends when it next runs, its read cut short.
        self._connections.discard(longest_idle)
        writer.close()
        self._tcp_closed_for_room += 1
        return True

    async def _read_message(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        """The next whole query; idle (and first to close for room) until it is all in."""
        self._idle[task] = writer
        try:
            async with asyncio.timeout(self._tcp_idle_timeout):
                (length,) = _LENGTH_PREFIX.unpack(await reader.readexactly(_LENGTH_PREFIX.size))
                return await reader.readexactly(length)
        finally:
            self._idle.pop(task, None)

    async def _report(self) -> None:
        """Log what was limited, every interval in which anything was."""
        last = self.stats()
        while True:
            await asyncio.sleep(_REPORT_INTERVAL)
            now = self.stats()
            moved = {
                name: value - last[name]
                for name, value in now.items()
                if name not in ("tcp_connections", "rate_limit_networks")
            }
            if any(moved.values()):
                moved["tcp_connections"] = now["tcp_connections"]
                moved["rate_limit_networks"] = now["rate_limit_networks"]
                logger.info(
                    "DNS limits in the last %g s: %s", _REPORT_INTERVAL, _describe_stats(moved)
                )
            last = now


class _UdpProtocol(asyncio.DatagramProtocol):
    """One reply datagram per query datagram, answered as it arrives.

    The hot path: a cached answer goes out from here with no task and no callback.
    """

    def __init__(
        self,
        answer: Callable[[bytes, str, bool], bytes | Forward | Transfer | None],
        forward: Callable[[Forward, Callable[[bytes], None]], None],
        limiter: RateLimiter | None,
        counters: DnsCounters,
    ) -> None:
        self._answer = answer
        self._forward = forward
        self._limiter = limiter
        self._counters = counters
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: CPython 3.11's selector transport does not
        # subclass asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        host = addr[0]
        limiter = self._limiter
        # Before the handler: a query over the limit costs no lookup.
        if limiter is not None and not limiter.allow(host):
            slipped = limiter.limited_reply(data)
            if slipped is not None:
                self._send(slipped, addr)
            return
        try:
            if data[1] & SAMPLE_MASK:
                reply = self._answer(data, host, False)
            else:  # one query in 64 is timed (dnsserver/counters.py)
                started = time.perf_counter()
                reply = self._answer(data, host, False)
                self._counters.observe(time.perf_counter() - started)
        except IndexError:  # under two bytes (_answer raises nothing): not even an id
            self._counters.unanswered[False] += 1
            return
        if reply is None:
            return
        if isinstance(reply, bytes):
            self._send(reply, addr)
        elif isinstance(reply, Forward):
            self._forward(reply, lambda answer: self._send(answer, addr))

    def _send(self, reply: bytes, addr: Any) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (e.g. port unreachable): the client left.
        logger.debug("UDP error: %s", exc)


def _enlarge_receive_buffer(sock: Any) -> None:
    """Ask for a large UDP receive buffer: past net.core.rmem_max when allowed (root)."""
    if sock is None:
        return
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, _UDP_RECEIVE_BUFFER)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RECEIVE_BUFFER)


def _raise_open_file_limit(wanted: int) -> None:
    """Raise this process's soft limit on open files to its hard limit, so that many TCP
    connections fit (a soft limit of 1024 is common); log when ``wanted`` does not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an unlimited number of files; its usual ceiling (fs.nr_open) instead.
    target = _MOST_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            logger.debug("open-file limit raised from %d to %d", soft, target)
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        logger.warning(
            "only %d open files allowed (ulimit -n): fewer than the %d that the TCP "
            "connection limit needs; raise the hard limit or lower --tcp-max-connections",
            soft,
            wanted,
        )


def _describe_stats(stats: dict[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in stats.items())
