"""The records a dataplane's agent follows, as they travel: services and destinations to
JSON-ready values and back.

The control plane's feed (registry/agents/service_feed.py) encodes, the agent
(meshdns/agent_records.py) decodes; one module, so both ends read the same format.
Endpoints are lists, not objects: one is sent thousands of times in a large mesh.

An answer is an object: ``revision``; ``full`` (whole, or changes since the revision
asked after); ``mesh`` (``{name, mtls, legacyNames}``, null when there is no such mesh)
and ``hostnameZones``, in whole answers and when they changed; then, each a list,
``services`` (this zone's legacy services, encoded as :func:`encode_service`) and
``removed`` (names), ``remote`` and ``removedRemote`` (other zones' services),
``destinations`` (:func:`encode_destination`) and ``removedDestinations`` (keys,
``MeshService/redis``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address, ip_address
from types import MappingProxyType
from typing import Any

from registry.errors import RegistryError
from registry.snapshot import Destination, DestinationPort, Endpoint, ServiceView


class RecordsError(RegistryError):
    """An answer of the records feed that does not have the records' format."""


def encode_endpoint(endpoint: Endpoint) -> list[Any]:
    return [
        endpoint.dataplane,
        str(endpoint.address),
        endpoint.port,
        endpoint.ready,
        endpoint.online,
        endpoint.zone,
    ]


def decode_endpoint(item: list[Any]) -> Endpoint:
    dataplane, address, port, ready, online, zone = item
    return Endpoint(
        dataplane=dataplane,
        address=ip_address(address),
        port=int(port),
        ready=bool(ready),
        online=bool(online),
        zone=zone,
    )


def encode_service(service: ServiceView) -> dict[str, Any]:
    return {
        "name": service.name,
        "vip": str(service.vip) if service.vip else None,
        "vip6": str(service.vip6) if service.vip6 else None,
        "endpoints": [encode_endpoint(endpoint) for endpoint in service.endpoints],
    }


def decode_service(item: Mapping[str, Any]) -> ServiceView:
    try:
        return ServiceView(
            name=item["name"],
            vip=IPv4Address(item["vip"]) if item.get("vip") else None,
            vip6=IPv6Address(item["vip6"]) if item.get("vip6") else None,
            endpoints=_endpoints(item["endpoints"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RecordsError(f"a service that cannot be read: {error!r}") from None


def encode_destination(destination: Destination) -> dict[str, Any]:
    return {
        "kind": destination.kind,
        "name": destination.name,
        "hostnames": list(destination.hostnames),
        "vip": str(destination.vip) if destination.vip else None,
        "zone": destination.zone,
        "service": destination.service,
        "labels": dict(destination.labels),
        "ports": [
            {
                "name": port.name,
                "port": port.port,
                "appProtocol": port.app_protocol,
                "endpoints": [encode_endpoint(endpoint) for endpoint in port.endpoints],
                "hosts": [[host, number] for host, number in port.hosts],
            }
            for port in destination.ports
        ],
    }


def decode_destination(item: Mapping[str, Any]) -> Destination:
    try:
        return Destination(
            kind=item["kind"],
            name=item["name"],
            hostnames=tuple(item["hostnames"]),
            vip=IPv4Address(item["vip"]) if item.get("vip") else None,
            ports=tuple(
                DestinationPort(
                    name=port["name"],
                    port=int(port["port"]),
                    app_protocol=port.get("appProtocol", "tcp"),
                    endpoints=_endpoints(port.get("endpoints", ())),
                    hosts=tuple((host, int(number)) for host, number in port.get("hosts", ())),
                )
                for port in item["ports"]
            ),
            zone=item.get("zone"),
            service=item.get("service"),
            labels=MappingProxyType(dict(item.get("labels") or {})),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RecordsError(f"a destination that cannot be read: {error!r}") from None


def _endpoints(items: Iterable[list[Any]]) -> tuple[Endpoint, ...]:
    return tuple(decode_endpoint(item) for item in items)
