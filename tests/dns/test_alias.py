"""Kuma's dotted alias: service a_b_c_d also answers at a.b.c.d.mesh (and its endpoints
at a.b.c.d.endpoints.mesh); SRV and reverse names use the service's own name only."""

from __future__ import annotations

import pytest

from dnsserver import Handler
from tests.dns.dnstesting import ask, mesh, rcode, rdatas, service, snapshot, zone_config


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode_text", "answer"),
    [
        ("backend.kuma-demo.svc.8080.mesh.", "A", "NOERROR", ["240.0.0.3"]),
        ("backend_kuma-demo_svc_8080.mesh.", "A", "NOERROR", ["240.0.0.3"]),
        ("backend.kuma-demo.svc.8080.mesh.", "AAAA", "NOERROR", []),
        # The names between the alias and the apex exist, empty (RFC 8020).
        ("kuma-demo.svc.8080.mesh.", "A", "NOERROR", []),
        ("svc.8080.mesh.", "A", "NOERROR", []),
        ("8080.mesh.", "A", "NOERROR", []),
        ("other.svc.8080.mesh.", "A", "NXDOMAIN", []),
        # The endpoints name has its dotted alias too.
        ("backend.kuma-demo.svc.8080.endpoints.mesh.", "A", "NOERROR", ["10.3.0.1"]),
        ("backend_kuma-demo_svc_8080.endpoints.mesh.", "A", "NOERROR", ["10.3.0.1"]),
        ("kuma-demo.svc.8080.endpoints.mesh.", "A", "NOERROR", []),
        # SRV only at the underscore name: RFC 2782 owner names are _service._proto.
        (
            "_backend_kuma-demo_svc_8080._tcp.mesh.",
            "SRV",
            "NOERROR",
            ["0 1 8080 0a030001.addr.mesh."],
        ),
        ("_backend.kuma-demo.svc.8080._tcp.mesh.", "SRV", "NXDOMAIN", []),
        # PTR names the service by its own name.
        ("3.0.0.240.in-addr.arpa.", "PTR", "NOERROR", ["backend_kuma-demo_svc_8080.mesh."]),
    ],
)
def test_alias(handler, name, rdtype, rcode_text, answer):
    reply = ask(handler, name, rdtype)
    assert rcode(reply) == rcode_text
    assert rdatas(reply.answer) == answer


@pytest.mark.parametrize(
    ("services", "name", "rcode_text", "answer"),
    [
        # A service whose name is no DNS label ("a.b") does not hide the alias.
        (
            [service("a.b", "240.0.0.1"), service("a_b", "240.0.0.2")],
            "a.b.mesh.",
            "NOERROR",
            ["240.0.0.2"],
        ),
        # A name that is both a service and above an alias keeps its records.
        (
            [service("b", "240.0.0.1"), service("a_b", "240.0.0.2")],
            "b.mesh.",
            "NOERROR",
            ["240.0.0.1"],
        ),
        # A real name wins over an alias that collides with it.
        (
            [service("web_endpoints", "240.0.0.5"), service("web", "240.0.0.6")],
            "web.endpoints.mesh.",
            "NOERROR",
            [],
        ),
        # An alias that would need an empty label is not made.
        ([service("a__b", "240.0.0.7")], "b.mesh.", "NXDOMAIN", []),
    ],
)
def test_alias_collisions(services, name, rcode_text, answer):
    handler = Handler(zone_config(), snapshot(mesh("default", *services)))
    reply = ask(handler, name)
    assert rcode(reply) == rcode_text
    assert rdatas(reply.answer) == answer
