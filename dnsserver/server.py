"""The DNS transport: UDP and TCP listeners on one address that pass bytes to a handler.

Knows nothing of DNS beyond TCP's two-byte length framing (RFC 1035 4.2.2); what
to answer is the :class:`~dnsserver.handler.Handler`'s business. When the handler
hands back a :class:`~dnsserver.forward.Forward`, the transport awaits the
:class:`~dnsserver.forward.Forwarder` for it in a task of its own, so that other
queries are answered meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any, cast

from dnsserver.errors import BindError
from dnsserver.forward import Forward, Forwarder
from dnsserver.handler import Handler, Transfer

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


class DnsServer:
    """Serves a :class:`Handler` over UDP and TCP on one host and port."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 5653,
        *,
        tcp_idle_timeout: float = 10.0,
        max_tcp_connections: int = 256,
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
        self._tcp_idle_timeout = tcp_idle_timeout
        self._max_tcp_connections = max_tcp_connections
        self._shutdown_timeout = shutdown_timeout
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        # Every connection task, discarded when done; the idle ones are waiting for
        # a query and can be cancelled at shutdown without losing an answer.
        self._connections: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.Task[None]] = set()
        # UDP replies waiting for an upstream, likewise kept until done.
        self._forwarding: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The port listened on; with port 0, the one chosen at :meth:`start`."""
        return self._port

    async def start(self) -> None:
        """Listen on UDP and TCP; raise :class:`BindError` when the address is taken."""
        attempts = _EPHEMERAL_BIND_ATTEMPTS if self._port == 0 else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._bind()
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
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in self._idle:
            task.cancel()
        busy = self._connections | self._forwarding
        if busy:
            _, pending = await asyncio.wait(busy, timeout=self._shutdown_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self._answer, self._forward_udp),
            local_addr=(self._host, self._port),
            reuse_port=self._reuse_port or None,
        )
        _enlarge_receive_buffer(udp.get_extra_info("socket"))
        port = udp.get_extra_info("sockname")[1]
        try:
            self._tcp = await asyncio.start_server(
                self._serve_connection, self._host, port, reuse_port=self._reuse_port or None
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
        if task is None or self._closing or len(self._connections) >= self._max_tcp_connections:
            logger.debug("refusing a TCP connection: at the limit or closing")
            writer.close()
            return
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        client = str(writer.get_extra_info("peername")[0])
        try:
            while not self._closing:
                data = await self._read_message(task, reader)
                reply = self._answer(data, client, True)
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
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the client went away or idled out; nothing to answer
        finally:
            writer.close()

    async def _read_message(self, task: asyncio.Task[None], reader: asyncio.StreamReader) -> bytes:
        self._idle.add(task)
        try:
            async with asyncio.timeout(self._tcp_idle_timeout):
                (length,) = _LENGTH_PREFIX.unpack(await reader.readexactly(_LENGTH_PREFIX.size))
                return await reader.readexactly(length)
        finally:
            self._idle.discard(task)


class _UdpProtocol(asyncio.DatagramProtocol):
    """One reply datagram per query datagram, answered as it arrives.

    The hot path: a cached answer goes out from here with no task and no callback.
    """

    def __init__(
        self,
        answer: Callable[[bytes, str, bool], bytes | Forward | Transfer | None],
        forward: Callable[[Forward, Callable[[bytes], None]], None],
    ) -> None:
        self._answer = answer
        self._forward = forward
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: CPython 3.11's selector transport does not
        # subclass asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = self._answer(data, addr[0], False)
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
