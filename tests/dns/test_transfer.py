"""Zone transfers (AXFR; IXFR answered in full) to allowed clients; the CH identity."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from dnsserver import Handler
from dnsserver.handler import Transfer
from dnsserver.views import build_zone
from dnsserver.zonefile import render, zone_records
from tests.dns.dnstesting import (
    OTHER_DATAPLANE,
    OUTSIDER,
    big_endpoints,
    endpoint,
    mesh,
    parse,
    query,
    rcode,
    rdatas,
    service,
    snapshot,
    standard_config,
    standard_snapshot,
)

SECONDARY = ip_address("127.0.0.2")


def transfer_handler(view=None) -> Handler:
    config = standard_config(allow_transfer=(ip_network("127.0.0.0/8"),))
    return Handler(config, view or standard_snapshot())


def transferred(handler: Handler, rdtype: str = "AXFR", name: str = "mesh.") -> list[str]:
    reply = handler.handle(query(name, rdtype, qid=99), SECONDARY, tcp=True)
    assert isinstance(reply, Transfer)
    records = []
    for message in map(parse, reply.messages):
        assert message.id == 99 and rcode(message) == "NOERROR"
        records += [
            f"{rrset.name} {rrset.rdtype.name} {rdata}"
            for rrset in message.answer
            for rdata in rrset
        ]
    return records


def test_axfr_sends_the_default_mesh_between_two_soas():
    records = transferred(transfer_handler())
    assert records[0] == records[-1]
    assert records[0].startswith("mesh. SOA ns.mesh. hostmaster.mesh. 42 ")
    assert "web.mesh. A 240.0.0.2" in records
    assert "web.mesh. AAAA fd00::2" in records
    assert "_backend._tcp.mesh. SRV 0 1 8080 0a000001.addr.mesh." in records
    assert "ns.mesh. A 127.0.0.53" in records
    # The SRV targets' and VIPs' <hex>.addr names, so a secondary resolves them too.
    assert "0a000001.addr.mesh. A 10.0.0.1" in records
    assert "f0000002.addr.mesh. A 240.0.0.2" in records
    assert "0a000002.addr.mesh. A 10.0.0.2" in records  # not ready, still an address
    assert not any("only-other" in record for record in records)  # another mesh
    assert not any("arpa" in record for record in records)  # not this zone's names


def test_axfr_is_the_export_zone_file():
    handler = transfer_handler()
    zone = handler.transfer_zone()
    text = render(zone_records(zone), zone.origin)
    lines = [line.split("\t") for line in text.splitlines()[1:]]
    as_text = [f"{owner} {rtype} {data}" for owner, _, _, rtype, data in lines]
    assert as_text == transferred(handler)[:-1]


def test_large_zone_is_sent_over_several_messages():
    view = snapshot(
        mesh(
            "default",
            *(
                service(f"s{i}", f"240.0.{i // 250}.{i % 250 + 1}", endpoints=big_endpoints())
                for i in range(20)
            ),
        )
    )
    handler = transfer_handler(view)
    reply = handler.handle(query("mesh.", "AXFR"), SECONDARY, tcp=True)
    assert isinstance(reply, Transfer)
    assert len(reply.messages) > 1
    assert all(len(message) <= 65535 for message in reply.messages)
    records = transferred(handler)
    assert len(records) == len(zone_records(handler.transfer_zone())) + 1


def test_ixfr_gets_the_whole_zone_over_tcp_and_the_soa_over_udp():
    handler = transfer_handler()
    assert transferred(handler, "IXFR") == transferred(handler, "AXFR")
    reply = parse(handler.handle(query("mesh.", "IXFR"), SECONDARY, tcp=False))
    assert [rrset.rdtype.name for rrset in reply.answer] == ["SOA"]


@pytest.mark.parametrize(
    ("client", "name", "rdtype", "tcp"),
    [
        (OUTSIDER, "mesh.", "AXFR", True),  # not in --allow-transfer
        (OTHER_DATAPLANE, "mesh.", "IXFR", True),
        (SECONDARY, "web.mesh.", "AXFR", True),  # not the apex
        (SECONDARY, "mesh.", "AXFR", False),  # AXFR is TCP only
    ],
)
def test_transfers_refused(client, name, rdtype, tcp):
    reply = transfer_handler().handle(query(name, rdtype), client, tcp=tcp)
    assert isinstance(reply, bytes)
    assert rcode(parse(reply)) == "REFUSED"


def test_transfers_refused_without_allow_transfer():
    handler = Handler(standard_config(), standard_snapshot())
    assert rcode(parse(handler.handle(query("mesh.", "AXFR"), SECONDARY, tcp=True))) == "REFUSED"


def test_transfer_follows_updates():
    handler = transfer_handler(snapshot(mesh("default", service("a", "240.0.0.1")), revision=1))
    handler.update(
        snapshot(
            mesh("default", service("b", "240.0.0.2", endpoints=(endpoint("10.0.0.1"),))),
            revision=2,
        )
    )
    records = transferred(handler)
    assert " 2 " in records[0]
    assert "b.mesh. A 240.0.0.2" in records and "a.mesh. A 240.0.0.1" not in records


def test_zone_file_of_a_zone():
    zone = build_zone(standard_config(), standard_snapshot().meshes["other"], 7)
    text = render(zone_records(zone), zone.origin)
    assert text.splitlines()[:3] == [
        "$ORIGIN mesh.",
        "mesh.\t30\tIN\tSOA\tns.mesh. hostmaster.mesh. 7 3600 600 86400 30",
        "mesh.\t30\tIN\tNS\tns.mesh.",
    ]
    assert "only-other.mesh.\t30\tIN\tA\t240.1.0.3" in text


@pytest.mark.parametrize("name", ["id.server.", "HOSTNAME.BIND."])
def test_server_identity_in_class_chaos(name):
    handler = Handler(standard_config(server_id="meshdns-1"), standard_snapshot())
    reply = parse(handler.handle(query(name, "TXT", rdclass="CH"), OUTSIDER))
    assert rdatas(reply.answer) == ['"meshdns-1"']
    assert reply.answer[0].rdclass.name == "CH"
    other = parse(handler.handle(query("web.mesh.", "TXT", rdclass="CH"), OUTSIDER))
    assert rcode(other) == "REFUSED"
