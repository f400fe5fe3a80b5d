"""Builders of the resources the registry tests store."""

from __future__ import annotations

from typing import Any

from registry.schema import Dataplane, Mesh, parse_resource


def mesh(name: str = "default", mtls: bool = False) -> Mesh:
    document: dict[str, Any] = {"type": "Mesh", "name": name}
    if mtls:
        document["mtls"] = {
            "enabledBackend": "ca-1",
            "backends": [{"name": "ca-1", "type": "builtin"}],
        }
    resource = parse_resource(document)
    assert isinstance(resource, Mesh)
    return resource


def dataplane(
    name: str,
    service: str = "web",
    mesh: str = "default",
    address: str = "10.0.0.1",
    port: int = 8080,
    tags: dict[str, str] | None = None,
    ready: bool = True,
    inbounds: list[dict[str, Any]] | None = None,
    advertised_address: str | None = None,
) -> Dataplane:
    """A Dataplane with one inbound of `service`, or the `inbounds` given."""
    if inbounds is None:
        inbounds = [
            {
                "port": port,
                "tags": {"kuma.io/service": service, **(tags or {})},
                "health": {"ready": ready},
            }
        ]
    networking: dict[str, Any] = {"address": address, "inbound": inbounds}
    if advertised_address:
        networking["advertisedAddress"] = advertised_address
    resource = parse_resource(
        {"type": "Dataplane", "mesh": mesh, "name": name, "networking": networking}
    )
    assert isinstance(resource, Dataplane)
    return resource
