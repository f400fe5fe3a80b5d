"""A tiny upstream DNS server on loopback, for forwarding tests: real UDP, real TCP.

It answers a fixed table (dnspython builds the replies), or, when ``silent``, reads
queries and never answers, to stand for an upstream that times out.
"""

from __future__ import annotations

import socket
import struct
import threading

import dns.message
import dns.rcode
import dns.rrset

from tests.helpers import free_port

UPSTREAM_A = "192.0.2.80"
# name -> (rcode, [(owner, ttl, type, data)...], [authority...])
TABLE: dict[str, tuple[int, list[tuple[str, int, str, str]], list[tuple[str, int, str, str]]]] = {
    "example.com.": (dns.rcode.NOERROR, [("example.com.", 300, "A", UPSTREAM_A)], []),
    "www.example.com.": (
        dns.rcode.NOERROR,
        [
            ("www.example.com.", 300, "CNAME", "example.com."),
            ("example.com.", 300, "A", UPSTREAM_A),
        ],
        [],
    ),
    "txt.example.com.": (
        dns.rcode.NOERROR,
        [("txt.example.com.", 60, "TXT", '"hello" "world"')],
        [],
    ),
    "mx.example.com.": (
        dns.rcode.NOERROR,
        [("mx.example.com.", 60, "MX", "10 mail.example.com.")],
        [],
    ),
    "big.example.com.": (
        dns.rcode.NOERROR,
        [("big.example.com.", 60, "A", f"192.0.2.{i}") for i in range(1, 201)],
        [],
    ),
    "nx.example.com.": (
        dns.rcode.NXDOMAIN,
        [],
        [("example.com.", 60, "SOA", "ns.example.com. h.example.com. 1 2 3 4 60")],
    ),
    "fail.example.com.": (dns.rcode.SERVFAIL, [], []),
}


class StubUpstream:
    """A UDP and TCP DNS server on 127.0.0.1, in a thread; use as a context manager."""

    def __init__(self, *, silent: bool = False) -> None:
        self.silent = silent
        self.port = free_port()
        self.queries: list[str] = []
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", self.port))
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind(("127.0.0.1", self.port))
        self._tcp.listen(16)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> StubUpstream:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._udp.close()
        self._tcp.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def answer(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        self.queries.append(question.name.to_text().lower())
        if self.silent:
            return None
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.RA
        rcode, answer, authority = TABLE.get(
            question.name.to_text().lower(), (dns.rcode.NXDOMAIN, [], [])
        )
        reply.set_rcode(rcode)
        for owner, ttl, rdtype, text in answer:
            if rdtype in (question.rdtype.name, "CNAME") or question.rdtype.name == "ANY":
                reply.answer.append(dns.rrset.from_text(owner, ttl, "IN", rdtype, text))
        for owner, ttl, rdtype, text in authority:
            reply.authority.append(dns.rrset.from_text(owner, ttl, "IN", rdtype, text))
        return reply.to_wire(max_size=65535)

    def _serve_udp(self) -> None:
        self._udp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, peer = self._udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self.answer(data)
            if reply is not None:
                if len(reply) > 1232:
                    reply = self._truncated(data)
                self._udp.sendto(reply, peer)

    def _truncated(self, data: bytes) -> bytes:
        reply = dns.message.make_response(dns.message.from_wire(data))
        reply.flags |= dns.flags.TC
        return reply.to_wire()

    def _serve_tcp(self) -> None:
        self._tcp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                try:
                    (length,) = struct.unpack("!H", _read(connection, 2))
                    reply = self.answer(_read(connection, length))
                except (OSError, struct.error):
                    continue
                if reply is not None:
                    connection.sendall(struct.pack("!H", len(reply)) + reply)


def _read(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data
