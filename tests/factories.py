"""Resources as documents (Kuma's Universal format), built the same way by every test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from registry.schema import Dataplane


def inbound(
    service: str,
    port: int = 8080,
    *,
    tags: dict[str, str] | None = None,
    ready: bool | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An inbound of `service` on `port`, with `tags` besides ``kuma.io/service``, with
    ``health: {ready}`` when `ready` is given, and any other `fields` (``name``,
    ``address``...)."""
    document: dict[str, Any] = {
        "port": port,
        "tags": {"kuma.io/service": service, **(tags or {})},
        **fields,
    }
    if ready is not None:
        document["health"] = {"ready": ready}
    return document


def dataplane(
    name: str,
    address: str = "10.0.0.1",
    *services: str,
    mesh: str = "default",
    port: int = 8080,
    tags: dict[str, str] | None = None,
    ready: bool | None = None,
    inbounds: Sequence[dict[str, Any]] = (),
    labels: dict[str, str] | None = None,
    metrics: dict[Any, Any] | None = None,
    **networking: Any,
) -> dict[str, Any]:
    """A Dataplane at `address` with one inbound per service (ports from `port` on, each
    with `tags` and `ready` as :func:`inbound` has them), then the `inbounds` given; with
    neither, one inbound of a service named after the dataplane's prefix (``web-1`` serves
    ``web``). `networking` adds fields to ``networking`` (``advertisedAddress``,
    ``outbound``...)."""
    served = services or (() if inbounds else (name.rsplit("-", 1)[0],))
    document: dict[str, Any] = {
        "type": "Dataplane",
        "mesh": mesh,
        "name": name,
        "networking": {
            "address": address,
            "inbound": [
                inbound(service, port + index, tags=tags, ready=ready)
                for index, service in enumerate(served)
            ]
            + list(inbounds),
            **networking,
        },
    }
    if labels:
        document["labels"] = labels
    if metrics is not None:
        document["metrics"] = metrics
    return document


def dataplane_resource(
    name: str, address: str = "10.0.0.1", *services: str, **fields: Any
) -> Dataplane:
    """:func:`dataplane` as the typed resource (``Dataplane.model_validate``: the schema
    without the rules a registration is checked against)."""
    return Dataplane.model_validate(dataplane(name, address, *services, **fields))


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
