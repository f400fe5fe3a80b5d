"""Resources as documents (Kuma's Universal format), built the same way by every test."""

from __future__ import annotations

from typing import Any


def dataplane(
    name: str,
    address: str = "10.0.0.1",
    *services: str,
    mesh: str = "default",
    port: int = 8080,
    labels: dict[str, str] | None = None,
    **networking: Any,
) -> dict[str, Any]:
    """A Dataplane at `address` with one inbound per service (ports from `port` on);
    with no service given, one inbound of a service named after the dataplane's prefix
    (``web-1`` serves ``web``)."""
    served = services or (name.rsplit("-", 1)[0],)
    document: dict[str, Any] = {
        "type": "Dataplane",
        "mesh": mesh,
        "name": name,
        "networking": {
            "address": address,
            "inbound": [
                {"port": port + index, "tags": {"kuma.io/service": service}}
                for index, service in enumerate(served)
            ],
            **networking,
        },
    }
    if labels:
        document["labels"] = labels
    return document


def mesh(name: str = "default", *, mtls: bool = False, **fields: Any) -> dict[str, Any]:
    """A Mesh; with `mtls`, one builtin CA backend enabled."""
    document: dict[str, Any] = {"type": "Mesh", "name": name, **fields}
    if mtls:
        document["mtls"] = {
            "enabledBackend": "ca-1",
            "backends": [{"name": "ca-1", "type": "builtin"}],
        }
    return document


def zone_ingress(
    name: str,
    zone: str | None,
    *services: str,
    address: str = "127.0.0.12",
    port: int = 10001,
    mesh: str = "default",
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "ZoneIngress",
        "name": name,
        "networking": {"address": address, "port": port},
        "availableServices": [
            {"mesh": mesh, "tags": {"kuma.io/service": service}, "instances": 1}
            for service in services
        ],
    }
    if zone is not None:
        document["zone"] = zone
    return document


def traffic_permission(
    name: str, sources: list[str], destinations: list[str], mesh: str = "default"
) -> dict[str, Any]:
    return {
        "type": "TrafficPermission",
        "mesh": mesh,
        "name": name,
        "sources": [{"match": {"kuma.io/service": s}} for s in sources],
        "destinations": [{"match": {"kuma.io/service": d}} for d in destinations],
    }
