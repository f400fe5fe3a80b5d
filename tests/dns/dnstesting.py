"""Helpers for the DNS tests: hand-built snapshots, query bytes, parsed replies."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from types import MappingProxyType

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from dnsserver import DnsServer, Handler, ZoneConfig
from dnsserver.config import DnsLimits
from dnsserver.forward import Forwarder
from meshdns import wiring
from meshdns.settings import Settings
from registry.snapshot import (
    Destination,
    DestinationPort,
    Endpoint,
    MeshView,
    ServiceView,
    Snapshot,
)
from tests import serve_settings

# A client that is no registered dataplane: answered in the default mesh.
OUTSIDER = ip_address("192.0.2.1")
# A dataplane of the mesh "other".
OTHER_DATAPLANE = ip_address("10.1.0.1")
NS_ADDRESS = ip_address("127.0.0.53")
BIG_ENDPOINTS = 300
REVISION = 42


def endpoint(
    address: str,
    *,
    ready: bool = True,
    port: int = 8080,
    zone: str | None = None,
    online: bool = True,
) -> Endpoint:
    return Endpoint(
        dataplane=f"dp-{address}",
        address=ip_address(address),
        port=port,
        ready=ready,
        zone=zone,
        online=online,
    )


def service(
    name: str, vip: str | None, vip6: str | None = None, endpoints: tuple[Endpoint, ...] = ()
) -> ServiceView:
    v4 = IPv4Address(vip) if vip else None
    v6 = IPv6Address(vip6) if vip6 else None
    return ServiceView(name=name, vip=v4, vip6=v6, endpoints=endpoints)


def port(
    name: str,
    number: int,
    *endpoints: Endpoint,
    hosts: tuple[tuple[str, int], ...] = (),
) -> DestinationPort:
    """A destination's port (``name``: its name, else its number as text)."""
    return DestinationPort(name=name, port=number, endpoints=endpoints, hosts=hosts)


def destination(
    name: str,
    hostnames: tuple[str, ...],
    vip: str | None,
    *ports: DestinationPort,
    kind: str = "MeshService",
) -> Destination:
    return Destination(
        kind=kind,
        name=name,
        hostnames=hostnames,
        vip=IPv4Address(vip) if vip else None,
        ports=ports,
    )


def mesh(
    name: str,
    *services: ServiceView,
    destinations: tuple[Destination, ...] = (),
    legacy_names: bool = True,
) -> MeshView:
    return MeshView(
        name=name,
        services=MappingProxyType({s.name: s for s in services}),
        destinations=MappingProxyType({d.key: d for d in destinations}),
        legacy_names=legacy_names,
    )


def snapshot(
    *meshes: MeshView,
    revision: int = REVISION,
    clients: dict[str, str] | None = None,
    hostname_zones: tuple[str, ...] = (),
) -> Snapshot:
    return Snapshot(
        revision=revision,
        meshes=MappingProxyType({m.name: m for m in meshes}),
        dataplane_meshes=MappingProxyType(
            {ip_address(address): name for address, name in (clients or {}).items()}
        ),
        hostname_zones=frozenset(hostname_zones),
    )


def big_endpoints() -> tuple[Endpoint, ...]:
    return tuple(endpoint(f"10.2.{i // 250}.{i % 250 + 1}") for i in range(BIG_ENDPOINTS))


def standard_snapshot() -> Snapshot:
    """The registry most protocol tests answer from."""
    default = mesh(
        "default",
        service("web", "240.0.0.2", "fd00::2"),
        service(
            "backend",
            "240.0.0.1",
            endpoints=(
                endpoint("10.0.0.1"),
                endpoint("10.0.0.1", port=9090),  # same address, another inbound
                endpoint("10.0.0.2", ready=False),
                endpoint("10.0.0.3"),
                endpoint("fd00::1:1"),
            ),
        ),
        service("backend_kuma-demo_svc_8080", "240.0.0.3", endpoints=(endpoint("10.3.0.1"),)),
        service("big", "240.0.0.4", endpoints=big_endpoints()),
        service("novip", None),
        service("", "240.0.0.9"),
        service("x" * 64, "240.0.0.10"),
        service("has.dot", "240.0.0.11"),
    )
    other = mesh("other", service("web", "240.1.0.2"), service("only-other", "240.1.0.3"))
    return snapshot(default, other, clients={str(OTHER_DATAPLANE): "other"})


def zone_config(**overrides: object) -> ZoneConfig:
    """`serve`'s zone config on the settings' defaults, as a handler of no particular
    process: no glue record and no server id, unless given."""
    anonymous: dict[str, object] = {"ns_address": None, "server_id": None}
    return replace(wiring.zone_config(Settings()), **{**anonymous, **overrides})  # type: ignore[arg-type]


def dns_limits(**overrides: object) -> DnsLimits:
    """`serve`'s limits on the settings' defaults, with the fields in `overrides`."""
    return replace(serve_settings.dns_limits(), **overrides)  # type: ignore[arg-type]


def dns_server(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: DnsLimits | None = None,
    forwarder: Forwarder | None = None,
) -> DnsServer:
    """A DNS server on loopback (a free port unless given), limited as `serve` is unless
    given `limits`."""
    return DnsServer(handler, host, port, limits=limits or dns_limits(), forwarder=forwarder)


def standard_config(**changes: object) -> ZoneConfig:
    return zone_config(**{"ns_address": NS_ADDRESS, **changes})


def standard_handler(**changes: object) -> Handler:
    return Handler(standard_config(**changes), standard_snapshot())


def query(
    name: str,
    rdtype: str | int = "A",
    *,
    rdclass: str = "IN",
    edns: int | None = None,
    payload: int = 1232,
    qid: int = 4242,
    rd: bool = True,
) -> bytes:
    """The wire form of a query; ``edns`` is the EDNS version, None for no OPT record."""
    message = dns.message.make_query(
        name,
        dns.rdatatype.RdataType.make(rdtype),
        dns.rdataclass.RdataClass.make(rdclass),
        use_edns=edns if edns is not None else False,
        payload=payload,
    )
    message.id = qid
    if not rd:
        message.flags &= ~dns.flags.RD
    return message.to_wire()


def ask(
    handler: Handler, name: str, rdtype: str | int = "A", *, client=OUTSIDER, tcp=False, **kwargs
) -> dns.message.Message:
    """Ask ``handler`` and parse its reply."""
    reply = handler.handle(query(name, rdtype, **kwargs), client, tcp=tcp)
    assert reply is not None, "the handler dropped a well-formed query"
    return parse(reply)


def parse(reply: bytes) -> dns.message.Message:
    # one_rr_per_rrset keeps every record apart, so counts match the wire.
    return dns.message.from_wire(reply, one_rr_per_rrset=True)


def rcode(message: dns.message.Message) -> str:
    return dns.rcode.to_text(message.rcode())


def flags(message: dns.message.Message) -> set[str]:
    return set(dns.flags.to_text(message.flags).split())


def rdatas(section: list[dns.rrset.RRset]) -> list[str]:
    """The data of every record of a section, as text, in wire order."""
    return [rdata.to_text() for rrset in section for rdata in rrset]


def owners(section: list[dns.rrset.RRset]) -> list[str]:
    return [rrset.name.to_text() for rrset in section]
