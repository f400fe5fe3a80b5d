"""`--dns-workers 2`: two processes on one port, both answering, alike, both following changes."""

from __future__ import annotations

import pytest

from tests.factories import dataplane
from tests.scaleout.scaleouttesting import addresses, ask, eventually, put, udp_socket

pytestmark = pytest.mark.integration


def test_two_workers_answer_alike_and_both_follow_changes(start_meshdns, database_url):
    server = start_meshdns(database_url, "--dns-workers", "2")
    put(server, dataplane("web-1", "10.0.0.5", "web"))
    # SO_REUSEPORT spreads clients by address and port: find a socket each process answers.
    by_process = {}
    sockets = [udp_socket() for _ in range(64)]
    try:
        for sock in sockets:
            reply = ask(sock, server.dns_port, "id.server.", "TXT", "CH")
            by_process.setdefault(addresses(reply)[0], sock)
        assert set(by_process) == {'"meshdns-0"', '"meshdns-1"'}

        def everywhere(name: str, expected: list[str]) -> bool:
            return all(
                addresses(ask(sock, server.dns_port, name)) == expected
                for sock in by_process.values()
            )

        eventually(lambda: everywhere("web.endpoints.mesh.", ["10.0.0.5"]), "both have web-1")
        vip = addresses(ask(by_process['"meshdns-0"'], server.dns_port, "web.mesh."))
        # The same question gets the same answer from either process.
        for name, rdtype in [("web.mesh.", "A"), ("_web._tcp.mesh.", "SRV"), ("nope.mesh.", "A")]:
            replies = [ask(sock, server.dns_port, name, rdtype) for sock in by_process.values()]
            assert replies[0].to_wire()[2:] == replies[1].to_wire()[2:] or (
                replies[0].answer == replies[1].answer
                and replies[0].authority == replies[1].authority
            )
        assert everywhere("web.mesh.", vip)

        put(server, dataplane("web-1", "10.0.0.6", "web"), dataplane("api-1", "10.0.0.7", "api"))
        eventually(lambda: everywhere("web.endpoints.mesh.", ["10.0.0.6"]), "both moved web-1")
        eventually(lambda: everywhere("api.endpoints.mesh.", ["10.0.0.7"]), "both have api")
    finally:
        for sock in sockets:
            sock.close()
    assert server.stop() == 0
