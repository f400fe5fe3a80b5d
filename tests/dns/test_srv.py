"""_<service>._tcp.mesh SRV: one record per ready endpoint, targets <hex>.addr.mesh with
their addresses in the additional section."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from dnsserver import Handler
from registry.snapshot import Endpoint
from tests.dns.dnstesting import ask, flags, mesh, rcode, rdatas, service, snapshot, zone_config

BACKEND_SRV = [
    "0 1 8080 0a000001.addr.mesh.",
    "0 1 9090 0a000001.addr.mesh.",  # same address, another inbound
    "0 1 8080 0a000003.addr.mesh.",
    "0 1 8080 fd000000000000000000000000010001.addr.mesh.",
]


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode_text", "answer", "additional"),
    [
        (
            "_backend._tcp.mesh.",
            "SRV",
            "NOERROR",
            BACKEND_SRV,
            ["10.0.0.1", "10.0.0.3", "fd00::1:1"],  # one per address
        ),
        (
            "_BackEnd._TCP.Mesh.",
            "SRV",
            "NOERROR",
            BACKEND_SRV,
            ["10.0.0.1", "10.0.0.3", "fd00::1:1"],
        ),
        # No ready endpoint: the name exists, empty.
        ("_web._tcp.mesh.", "SRV", "NOERROR", [], []),
        # Other types at an SRV name: NODATA; ANY gets the SRV set (RFC 8482).
        ("_backend._tcp.mesh.", "A", "NOERROR", [], []),
        ("_backend._tcp.mesh.", "ANY", "NOERROR", BACKEND_SRV, None),
        ("_tcp.mesh.", "SRV", "NOERROR", [], []),  # an empty non-terminal
        ("_nope._tcp.mesh.", "SRV", "NXDOMAIN", [], []),
        ("_backend._udp.mesh.", "SRV", "NXDOMAIN", [], []),
    ],
)
def test_srv(handler, name, rdtype, rcode_text, answer, additional):
    reply = ask(handler, name, rdtype)
    assert rcode(reply) == rcode_text
    assert "AA" in flags(reply)
    assert sorted(rdatas(reply.answer)) == sorted(answer)
    if additional is not None:
        assert sorted(rdatas(reply.additional)) == sorted(additional)
    if answer:
        assert {rrset.ttl for rrset in reply.answer} == {5}
        assert {rrset.name.to_text() for rrset in reply.answer} == {name}


def test_additional_records_are_owned_by_the_targets(handler):
    reply = ask(handler, "_backend._tcp.mesh.", "SRV")
    targets = {rdata.target.to_text() for rrset in reply.answer for rdata in rrset}
    owners = {rrset.name.to_text() for rrset in reply.additional}
    assert owners == targets
    for rrset in reply.additional:
        assert rrset.ttl == 5


def test_rotation_keeps_records_and_additionals_aligned(handler):
    """Every rotation holds the same records; the first SRV's address comes first."""
    seen_first = set()
    for _ in range(60):
        reply = ask(handler, "_backend._tcp.mesh.", "SRV")
        assert sorted(rdatas(reply.answer)) == sorted(BACKEND_SRV)
        first = reply.answer[0][0]
        seen_first.add(first.to_text())
        assert reply.additional[0].name == first.target
    assert len(seen_first) > 1  # rotated, not fixed (4 orders; 60 tries)


@pytest.mark.parametrize(
    ("local_zone", "endpoint_zone", "ready", "answer"),
    [
        (None, None, True, ["0 1 7000 0a090001.addr.mesh."]),
        ("east", None, True, ["0 1 7000 0a090001.addr.mesh."]),
        ("east", "east", True, ["0 1 7000 0a090001.addr.mesh."]),
        # Another zone's endpoint is not local; cross-zone answers come later.
        ("east", "west", True, []),
        (None, "west", True, []),
        (None, None, False, []),
    ],
)
def test_only_ready_endpoints_of_the_local_zone(local_zone, endpoint_zone, ready, answer):
    member = Endpoint("dp", ip_address("10.9.0.1"), 7000, ready=ready, zone=endpoint_zone)
    view = snapshot(mesh("default", service("s", "240.0.0.1", endpoints=(member,))))
    handler = Handler(zone_config(local_zone=local_zone), view)
    assert rdatas(ask(handler, "_s._tcp.mesh.", "SRV").answer) == answer
    addresses = ["10.9.0.1"] if answer else []
    assert rdatas(ask(handler, "s.endpoints.mesh.", "A").answer) == addresses
