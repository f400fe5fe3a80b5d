"""Helpers of the scale-out tests: dataplanes to apply, DNS asked from chosen sockets."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import TypeVar

import dns.message
import dns.query
import dns.rdataclass
import httpx

from tests import helpers
from tests.helpers import Meshdns

T = TypeVar("T")
PATIENCE = 10.0


def put(server: Meshdns, *documents: dict) -> None:
    response = httpx.post(server.api + "/apply", json={"items": list(documents)}, timeout=30)
    assert response.status_code == 200, response.text


def revision(server: Meshdns) -> int:
    return json.loads(httpx.get(server.api + "/readyz", timeout=5).text)["snapshot"]["revision"]


def ask(sock: socket.socket, port: int, name: str, rdtype: str = "A", rdclass: str = "IN"):
    request = dns.message.make_query(name, rdtype, rdclass=dns.rdataclass.from_text(rdclass))
    return dns.query.udp(request, "127.0.0.1", port=port, timeout=2, sock=sock)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


def eventually(check: Callable[[], T], what: str, timeout: float = PATIENCE) -> T:
    """``check()``'s first truthy value, polling, with this package's patience."""
    return helpers.eventually(check, what, timeout)


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)  # dnspython waits with select; a blocking socket would hang
    return sock
