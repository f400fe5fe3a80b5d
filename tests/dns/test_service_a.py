"""Service names: <service>.mesh answers the VIPs, <service>.endpoints.mesh the endpoints."""

from __future__ import annotations

import pytest

from dnsserver.views import build_zone
from tests.dns.dnstesting import ask, flags, owners, rcode, rdatas, standard_snapshot, zone_config


@pytest.mark.parametrize(
    ("name", "rdtype", "answer", "ttl"),
    [
        ("web.mesh.", "A", ["240.0.0.2"], 30),
        ("web.mesh.", "AAAA", ["fd00::2"], 30),
        ("backend.mesh.", "A", ["240.0.0.1"], 30),
        # Ready endpoints only, one record per address (in a rotation: compared sorted).
        ("backend.endpoints.mesh.", "A", ["10.0.0.1", "10.0.0.3"], 5),
        ("backend.endpoints.mesh.", "AAAA", ["fd00::1:1"], 5),
    ],
)
def test_answers(handler, name, rdtype, answer, ttl):
    reply = ask(handler, name, rdtype)
    assert rcode(reply) == "NOERROR"
    assert sorted(rdatas(reply.answer)) == answer
    assert {rrset.ttl for rrset in reply.answer} == {ttl}
    assert set(owners(reply.answer)) == {name}
    assert reply.authority == reply.additional == []


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        # No IPv6 VIP configured: the name exists, the type does not.
        ("backend.mesh.", "AAAA"),
        # A service without any VIP yet.
        ("novip.mesh.", "A"),
        # A service without ready endpoints.
        ("web.endpoints.mesh.", "A"),
        ("novip.endpoints.mesh.", "AAAA"),
    ],
)
def test_nodata(handler, name, rdtype):
    reply = ask(handler, name, rdtype)
    assert (rcode(reply), reply.answer) == ("NOERROR", [])


@pytest.mark.parametrize(
    "name",
    [
        # Service names that are not DNS labels are left out of the zone.
        "has.dot.mesh.",
        "dot.mesh.",
        # Only services have endpoints names.
        "nothing.endpoints.mesh.",
        "a.web.mesh.",
    ],
)
def test_names_that_do_not_exist(handler, name):
    assert rcode(ask(handler, name)) == "NXDOMAIN"


def test_flags_aa_set_rd_copied_ra_never(handler):
    assert flags(ask(handler, "web.mesh.")) == {"QR", "AA", "RD"}
    assert flags(ask(handler, "web.mesh.", rd=False)) == {"QR", "AA"}


def test_reply_keeps_the_query_id(handler):
    assert ask(handler, "web.mesh.", qid=0xBEEF).id == 0xBEEF


def test_services_without_a_dns_name_are_left_out_of_the_zone():
    zone = build_zone(zone_config(), standard_snapshot().meshes["default"], revision=1)
    assert all(0 < len(label) <= 63 for name in zone.nodes for label in name)
    assert (b"has.dot",) not in zone.nodes
