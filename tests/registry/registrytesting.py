"""The resources the registry tests store: tests/factories.py's documents, parsed as a
registration is."""

from __future__ import annotations

from typing import Any

from registry.schema import Dataplane, Mesh, parse_resource
from tests import factories


def mesh(name: str = "default", mtls: bool = False) -> Mesh:
    resource = parse_resource(factories.mesh(name, mtls=mtls))
    assert isinstance(resource, Mesh)
    return resource


def registered_dataplane(
    name: str, address: str = "10.0.0.1", *services: str, ready: bool | None = True, **fields: Any
) -> Dataplane:
    """:func:`tests.factories.dataplane` as a registration parses it, the inbounds made from
    `services` ready unless `ready` says otherwise."""
    resource = parse_resource(factories.dataplane(name, address, *services, ready=ready, **fields))
    assert isinstance(resource, Dataplane)
    return resource
