"""dig and kdig, over UDP and TCP, for every row of DESIGN's DNS name table."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_network

import pytest

from dnsserver import DnsServer, Handler
from tests.dns.dnstesting import REVISION, snapshot, standard_config, standard_snapshot
from tests.dns.stubupstream import UPSTREAM_A
from tests.interop.interophelpers import CLIENT_OPTIONS, ServerThread, forwarder_for, run

pytestmark = pytest.mark.interop

# Outside the recursion ACL (127.0.0.1/32), and a dataplane of the mesh "other".
OUTSIDER = "127.0.0.2"
OTHER_MESH_CLIENT = "127.0.0.3"
SOA = ["ns.mesh.", "hostmaster.mesh.", str(REVISION), "3600", "600", "86400", "30"]


@pytest.fixture(scope="module")
def server(upstream) -> Iterator[DnsServer]:
    base = standard_snapshot()
    view = snapshot(*base.meshes.values(), clients={OTHER_MESH_CLIENT: "other"})
    config = standard_config(allow_recursion=(ip_network("127.0.0.1/32"),))
    handler = Handler(config, view, forwarding=True)
    with ServerThread(handler, forwarder_for(upstream)) as server:
        yield server


BACKEND_SRV = [
    "0 1 8080 0a000001.addr.mesh.",
    "0 1 8080 0a000003.addr.mesh.",
    "0 1 8080 fd000000000000000000000000010001.addr.mesh.",
    "0 1 9090 0a000001.addr.mesh.",
]
# (name, type, extra client options, status, aa, answer data, check)
ROWS = [
    ("mesh", "SOA", (), "NOERROR", True, [" ".join(SOA)]),
    ("mesh", "NS", (), "NOERROR", True, ["ns.mesh."]),
    ("web.mesh", "A", (), "NOERROR", True, ["240.0.0.2"]),
    ("web.mesh", "AAAA", (), "NOERROR", True, ["fd00::2"]),
    ("backend.mesh", "AAAA", (), "NOERROR", True, []),  # no IPv6 VIP: NODATA
    ("backend.kuma-demo.svc.8080.mesh", "A", (), "NOERROR", True, ["240.0.0.3"]),
    ("backend.endpoints.mesh", "A", (), "NOERROR", True, ["10.0.0.1", "10.0.0.3"]),
    ("backend.endpoints.mesh", "AAAA", (), "NOERROR", True, ["fd00::1:1"]),
    ("_backend._tcp.mesh", "SRV", (), "NOERROR", True, BACKEND_SRV),
    ("0a000001.addr.mesh", "A", (), "NOERROR", True, ["10.0.0.1"]),
    ("fd000000000000000000000000010001.addr.mesh", "AAAA", (), "NOERROR", True, ["fd00::1:1"]),
    ("2.0.0.240.in-addr.arpa", "PTR", (), "NOERROR", True, ["web.mesh."]),
    ("1.0.0.10.in-addr.arpa", "PTR", (), "NOERROR", True, ["backend.mesh."]),
    ("nope.mesh", "A", (), "NXDOMAIN", True, []),
    ("web.mesh", "TXT", (), "NOERROR", True, []),  # existing name, other type
    ("example.com", "A", (), "NOERROR", False, [UPSTREAM_A]),  # forwarded
    ("example.com", "A", ("-b", OUTSIDER), "REFUSED", False, []),  # not allowed to recurse
    ("web.mesh", "A", ("-b", OTHER_MESH_CLIENT), "NOERROR", True, ["240.1.0.2"]),  # its mesh
]


@pytest.mark.parametrize("client", list(CLIENT_OPTIONS))
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
@pytest.mark.parametrize(
    ("name", "rdtype", "options", "status", "aa", "answer"),
    ROWS,
    ids=[f"{row[0]}-{row[1]}{'-from-' + row[2][1] if row[2] else ''}" for row in ROWS],
)
def test_name_table(server, client, transport, name, rdtype, options, status, aa, answer):
    reply = run(client, server, name, rdtype, transport, *options)
    assert reply.status == status
    assert ("aa" in reply.flags) == aa
    assert reply.data() == sorted(answer)
    if status == "NXDOMAIN" or (status == "NOERROR" and aa and not answer):
        assert reply.sections["AUTHORITY"] == [["mesh.", "30", "IN", "SOA", *SOA]]
    if rdtype == "SRV":
        assert reply.data("ADDITIONAL") == ["10.0.0.1", "10.0.0.3", "fd00::1:1"]


@pytest.mark.parametrize("client", list(CLIENT_OPTIONS))
def test_500_srv_records_truncated_over_udp_complete_over_tcp(client, upstream):
    """Issue 4, acceptance 2, with real clients."""
    from tests.dns.dnstesting import endpoint, mesh, service

    crowd = tuple(endpoint(f"10.20.{i // 250}.{i % 250 + 1}") for i in range(500))
    handler = Handler(
        standard_config(), snapshot(mesh("default", service("crowd", "240.0.0.1", endpoints=crowd)))
    )
    with ServerThread(handler) as server:
        udp = run(client, server, "_crowd._tcp.mesh", "SRV", "+notcp", "+ignore", "+bufsize=1232")
        assert "tc" in udp.flags
        assert 0 < len(udp.sections["ANSWER"]) < 500
        tcp = run(client, server, "_crowd._tcp.mesh", "SRV", "+tcp")
        assert "tc" not in tcp.flags
        assert len(tcp.sections["ANSWER"]) == 500
        assert len(tcp.sections["ADDITIONAL"]) >= 500  # the addresses (kdig adds its OPT line)
