"""Builders of Kuma's service model for the tests, and the view of a store as `serve` has it."""

from __future__ import annotations

from typing import Any

from registry.feed.view import RegistryView
from registry.schema import parse_resources
from registry.store import Store

LOCAL = {"kuma.io/origin": "zone", "kuma.io/zone": "default", "kuma.io/env": "universal"}


def mesh_service(
    name: str,
    *ports: dict[str, Any] | int,
    mesh: str = "default",
    selector: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A MeshService labelled as a standalone control plane labels one written to it,
    selecting `kuma.io/service: <name>` unless told otherwise."""
    return {
        "type": "MeshService",
        "mesh": mesh,
        "name": name,
        "labels": {"kuma.io/mesh": mesh, **LOCAL, **(labels or {})},
        "spec": {
            "selector": selector or {"dataplaneTags": {"kuma.io/service": name}},
            "ports": [{"port": port} if isinstance(port, int) else port for port in ports],
        },
    }


def external_service(
    name: str,
    port: int,
    *endpoints: tuple[str, int],
    mesh: str = "default",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "type": "MeshExternalService",
        "mesh": mesh,
        "name": name,
        "labels": {"kuma.io/mesh": mesh, **LOCAL, **(labels or {})},
        "spec": {
            "match": {"type": "HostnameGenerator", "port": port, "protocol": "tcp"},
            "endpoints": [{"address": address, "port": number} for address, number in endpoints],
        },
    }


def multizone_service(
    name: str, match: dict[str, str], *ports: dict[str, Any] | int, mesh: str = "default"
) -> dict[str, Any]:
    return {
        "type": "MeshMultiZoneService",
        "mesh": mesh,
        "name": name,
        "labels": {"kuma.io/mesh": mesh},
        "spec": {
            "selector": {"meshService": {"matchLabels": match}},
            "ports": [{"port": port} if isinstance(port, int) else port for port in ports],
        },
    }


def generator(
    name: str,
    template: str,
    kind: str = "meshService",
    match: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "HostnameGenerator",
        "name": name,
        "spec": {"selector": {kind: {"matchLabels": match or {}}}, "template": template},
    }
    if labels:
        document["labels"] = labels
    return document


async def put(store: Store, *documents: dict[str, Any]) -> None:
    await store.put_many(parse_resources(list(documents)))


async def loaded(store: Store, local_zone: str | None = None) -> RegistryView:
    """A view of the whole registry, as a follower's cold load builds it."""
    view = RegistryView(local_zone)
    view.apply_batch(await store.read_all())
    return view
