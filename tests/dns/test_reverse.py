"""PTR: the reverse names of VIPs and endpoint addresses point at <service>.mesh. We hold
those names only; any other reverse name is outside our zone (forwarded or REFUSED)."""

from __future__ import annotations

import pytest

from dnsserver import Handler
from tests.dns.dnstesting import (
    OTHER_DATAPLANE,
    ask,
    endpoint,
    flags,
    mesh,
    rcode,
    rdatas,
    service,
    snapshot,
    zone_config,
)

V6_VIP = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."
V6_ENDPOINT = "1.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode_text", "answer"),
    [
        ("2.0.0.240.in-addr.arpa.", "PTR", "NOERROR", ["web.mesh."]),
        ("1.0.0.240.IN-ADDR.ARPA.", "PTR", "NOERROR", ["backend.mesh."]),
        ("1.0.0.10.in-addr.arpa.", "PTR", "NOERROR", ["backend.mesh."]),
        ("2.0.0.10.in-addr.arpa.", "PTR", "NOERROR", ["backend.mesh."]),  # not ready: still known
        (V6_VIP, "PTR", "NOERROR", ["web.mesh."]),
        (V6_ENDPOINT, "PTR", "NOERROR", ["backend.mesh."]),
        ("2.0.0.240.in-addr.arpa.", "ANY", "NOERROR", ["web.mesh."]),
        # Not ours: the outside-zone rule (REFUSED here: this handler does not forward).
        ("99.0.0.10.in-addr.arpa.", "PTR", "REFUSED", []),
        ("2.0.0.240.in-addr.arpa.", "A", "REFUSED", []),
        ("0.0.240.in-addr.arpa.", "PTR", "REFUSED", []),
        # Another mesh's VIP is not known to this client's mesh.
        ("2.0.1.240.in-addr.arpa.", "PTR", "REFUSED", []),
    ],
)
def test_ptr(handler, name, rdtype, rcode_text, answer):
    reply = ask(handler, name, rdtype)
    assert rcode(reply) == rcode_text
    assert rdatas(reply.answer) == answer
    assert ("AA" in flags(reply)) == (rcode_text == "NOERROR")


def test_ptr_follows_the_client_mesh(handler):
    reply = ask(handler, "2.0.1.240.in-addr.arpa.", "PTR", client=OTHER_DATAPLANE)
    assert rdatas(reply.answer) == ["web.mesh."]


def test_every_service_at_an_address_gets_a_ptr():
    shared = endpoint("10.5.0.1")
    handler = Handler(
        zone_config(),
        snapshot(
            mesh(
                "default",
                service("b", "240.0.0.2", endpoints=(shared,)),
                service("a", "240.0.0.1", endpoints=(shared,)),
                service("c_d", "240.0.0.3", endpoints=(shared,)),
            )
        ),
    )
    reply = ask(handler, "1.0.5.10.in-addr.arpa.", "PTR")
    assert rdatas(reply.answer) == ["a.mesh.", "b.mesh.", "c_d.mesh."]
    # VIP and endpoint TTLs differ: the endpoints' (shorter) one holds for the set.
    assert reply.answer[0].ttl == 5
    assert ask(handler, "1.0.0.240.in-addr.arpa.", "PTR").answer[0].ttl == 30
