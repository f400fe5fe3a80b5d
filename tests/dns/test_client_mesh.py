"""A query is answered in the mesh of the dataplane it comes from, else the default mesh."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from dnsserver import Handler
from tests.dns.dnstesting import (
    OTHER_DATAPLANE,
    OUTSIDER,
    ask,
    mesh,
    rcode,
    rdatas,
    service,
    snapshot,
    zone_config,
)


@pytest.mark.parametrize(
    ("client", "name", "rcode_text", "answer"),
    [
        (OUTSIDER, "web.mesh.", "NOERROR", ["240.0.0.2"]),
        (OTHER_DATAPLANE, "web.mesh.", "NOERROR", ["240.1.0.2"]),
        (OUTSIDER, "only-other.mesh.", "NXDOMAIN", []),
        (OTHER_DATAPLANE, "only-other.mesh.", "NOERROR", ["240.1.0.3"]),
        (OTHER_DATAPLANE, "backend.mesh.", "NXDOMAIN", []),
        (ip_address("::1"), "web.mesh.", "NOERROR", ["240.0.0.2"]),
    ],
)
def test_answer_depends_on_the_client(handler, client, name, rcode_text, answer):
    reply = ask(handler, name, client=client)
    assert rcode(reply) == rcode_text
    assert rdatas(reply.answer) == answer


@pytest.mark.parametrize(
    ("default_mesh", "clients", "rcode_text"),
    [
        # The default mesh does not exist: an empty zone, apex only.
        ("missing", {}, "NXDOMAIN"),
        # The client's dataplane names a mesh the snapshot does not hold.
        ("default", {"192.0.2.1": "gone"}, "NXDOMAIN"),
        ("default", {}, "NOERROR"),
    ],
)
def test_missing_mesh_answers_as_an_empty_zone(default_mesh, clients, rcode_text):
    handler = Handler(
        zone_config(default_mesh=default_mesh),
        snapshot(mesh("default", service("web", "240.0.0.2")), clients=clients),
    )
    assert rcode(ask(handler, "web.mesh.")) == rcode_text
    assert rcode(ask(handler, "mesh.", "SOA")) == "NOERROR"


def test_update_swaps_the_whole_view():
    handler = Handler(zone_config())
    assert rcode(ask(handler, "web.mesh.")) == "NXDOMAIN"
    handler.update(snapshot(mesh("default", service("web", "240.0.0.2")), revision=2))
    assert rdatas(ask(handler, "web.mesh.").answer) == ["240.0.0.2"]
    assert ask(handler, "mesh.", "SOA").answer[0][0].serial == 2
    handler.update(snapshot(mesh("default"), revision=3))
    assert rcode(ask(handler, "web.mesh.")) == "NXDOMAIN"


@pytest.mark.parametrize("resolver", ["127.0.0.1", "::1"])
def test_a_dataplane_at_a_resolvers_address_does_not_change_its_view(resolver):
    """A node's resolver forwards every workload's queries from loopback: a dataplane of
    another mesh registered there must not turn them into that mesh's view."""
    handler = Handler(
        zone_config(),
        snapshot(
            mesh("default", service("web", "240.0.0.2")),
            mesh("evil", service("backend", "240.9.0.1")),
            clients={resolver: "evil", "127.0.0.7": "evil"},
        ),
    )
    assert rdatas(ask(handler, "web.mesh.", client=ip_address(resolver)).answer) == ["240.0.0.2"]
    assert rcode(ask(handler, "backend.mesh.", client=ip_address(resolver))) == "NXDOMAIN"
    # Any other address a dataplane holds alone still selects its mesh.
    assert rdatas(ask(handler, "backend.mesh.", client=ip_address("127.0.0.7")).answer) == [
        "240.9.0.1"
    ]
    # The resolver addresses are a setting.
    handler = Handler(
        zone_config(resolver_addresses=frozenset()),
        snapshot(
            mesh("default"),
            mesh("evil", service("backend", "240.9.0.1")),
            clients={resolver: "evil"},
        ),
    )
    assert rdatas(ask(handler, "backend.mesh.", client=ip_address(resolver)).answer) == [
        "240.9.0.1"
    ]
