"""The zone apex: SOA, NS and the name server's own name."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from dnsserver import Handler
from tests.dns.dnstesting import (
    NS_ADDRESS,
    REVISION,
    ask,
    flags,
    owners,
    rcode,
    rdatas,
    snapshot,
    standard_config,
    zone_config,
)

SOA = f"ns.mesh. hostmaster.mesh. {REVISION} 3600 600 86400 30"


@pytest.mark.parametrize(
    ("name", "rdtype", "answer", "additional"),
    [
        ("mesh.", "SOA", [SOA], []),
        ("mesh.", "NS", ["ns.mesh."], [str(NS_ADDRESS)]),
        ("ns.mesh.", "A", [str(NS_ADDRESS)], []),
    ],
)
def test_apex_records(handler, name, rdtype, answer, additional):
    reply = ask(handler, name, rdtype)
    assert rcode(reply) == "NOERROR"
    assert "AA" in flags(reply)
    assert rdatas(reply.answer) == answer
    assert rdatas(reply.additional) == additional
    assert reply.authority == []


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("mesh.", "A"), ("mesh.", "AAAA"), ("ns.mesh.", "AAAA"), ("ns.mesh.", "SOA")],
)
def test_apex_nodata(handler, name, rdtype):
    reply = ask(handler, name, rdtype)
    assert rcode(reply) == "NOERROR"
    assert reply.answer == []
    assert rdatas(reply.authority) == [SOA]


def test_glue_in_the_additional_section_is_owned_by_ns():
    reply = ask(_handler(ns_address=ip_address("2001:db8::53")), "mesh.", "NS")
    assert owners(reply.additional) == ["ns.mesh."]
    assert rdatas(reply.additional) == ["2001:db8::53"]
    assert reply.additional[0].rdtype.name == "AAAA"


def test_without_ns_address_there_is_no_glue_and_ns_stays_a_name():
    handler = _handler(ns_address=None)
    assert ask(handler, "mesh.", "NS").additional == []
    reply = ask(handler, "ns.mesh.", "A")
    assert (rcode(reply), reply.answer) == ("NOERROR", [])


@pytest.mark.parametrize(
    ("revision", "serial"), [(0, 0), (7, 7), (2**32 - 1, 2**32 - 1), (2**32 + 5, 5)]
)
def test_soa_serial_is_the_revision_in_32_bits(revision, serial):
    handler = Handler(zone_config(), snapshot(revision=revision))
    (soa,) = ask(handler, "mesh.", "SOA").answer
    assert soa[0].serial == serial


def test_soa_minimum_and_ttl_follow_negative_ttl():
    handler = _handler(negative_ttl=12)
    (soa,) = ask(handler, "mesh.", "SOA").answer
    assert (soa.ttl, soa[0].minimum) == (12, 12)


def test_another_domain():
    handler = Handler(zone_config(domain="Service.Consul."), snapshot())
    reply = ask(handler, "service.consul.", "SOA")
    assert rdatas(reply.answer)[0].startswith("ns.service.consul. hostmaster.service.consul. ")
    assert rcode(ask(handler, "mesh.", "SOA")) == "REFUSED"


def _handler(**changes) -> Handler:
    return Handler(standard_config(**changes), snapshot())
