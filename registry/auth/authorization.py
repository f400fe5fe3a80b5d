"""What each kind of token may do: the routes it may reach (by the scope they declare,
registry/auth/scopes.py) and the resources it may write.

- ``admin``: everything.
- ``dataplane`` (a mesh and a set of ``kuma.io/service`` names): registers, updates and
  deletes only dataplanes all of whose services are in the set, and follows its mesh's
  DNS records.
- ``zone``: a zone control plane's dataplanes, ingresses and egresses, only on that
  zone's control plane; it reads every GET route there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from ipaddress import ip_address
from typing import Any

from registry.auth.identity import DATAPLANE, ZONE, Identity
from registry.auth.scopes import Scope
from registry.errors import NotFound, RegistryError
from registry.schema import (
    SERVICE_TAG,
    ZONE_TAG,
    Dataplane,
    Resource,
    ZoneEgress,
    ZoneIngress,
    answered_addresses,
)
from registry.snapshot import IPAddress
from registry.store import Store


class Forbidden(RegistryError):
    """The token does not allow this request."""


# The scopes of the routes each kind of token reaches (admin: every route; PUBLIC routes
# take no token); zone tokens also read every GET route of their control plane.
DATAPLANE_TOKEN_SCOPES = frozenset({Scope.DATAPLANE_WRITE, Scope.MESH_RECORDS})
ZONE_TOKEN_SCOPES = frozenset({Scope.DATAPLANE_WRITE, Scope.ZONE_WRITE})
_READS = frozenset({"GET", "HEAD"})

DataplaneKey = tuple[str, str]  # (mesh, name)


def dataplane_services(dataplane: Dataplane) -> frozenset[str]:
    """The services a dataplane serves: its inbounds' and its gateway's."""
    services = set(dataplane.services)
    gateway = dataplane.networking.gateway
    if gateway is not None and SERVICE_TAG in gateway.tags:
        services.add(gateway.tags[SERVICE_TAG])
    return frozenset(services)


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{name}"' for name in sorted(names))


class Guard:
    """Checks what an identity may do on this control plane (mode and zone).

    `known_services` answers a dataplane's services from memory (the follower's view), so
    heartbeats need no database read; without it, or when it does not know, the store is
    asked.
    """

    def __init__(
        self,
        store: Store,
        *,
        mode: str = "standalone",
        zone: str | None = None,
        known_services: Callable[[DataplaneKey], frozenset[str] | None] | None = None,
        meshes_at: Callable[[IPAddress], set[str]] | None = None,
    ) -> None:
        self.store = store
        self.mode = mode
        self.zone = zone
        self._known_services = known_services or (lambda key: None)
        # The meshes of the dataplanes at an address (the follower's view).
        self._meshes_at = meshes_at or (lambda address: set())

    def check_route(
        self, identity: Identity, scope: Scope, method: str, path: str, params: Mapping[str, Any]
    ) -> None:
        """The first gate: which routes a token may reach at all (by the scope the route
        declares), and in which mesh."""
        if identity.is_admin:
            return
        if identity.kind == ZONE:
            if self.mode != "zone" or self.zone != identity.zone:
                here = f'zone "{self.zone}"' if self.mode == "zone" else f"a {self.mode}"
                raise Forbidden(f"{identity} is not valid on the control plane of {here}")
            if method in _READS or scope in ZONE_TOKEN_SCOPES:
                return
            raise Forbidden(
                f"{identity} may not {method} {path}: zone tokens write only dataplanes, "
                "zone ingresses and zone egresses"
            )
        if scope not in DATAPLANE_TOKEN_SCOPES:
            raise Forbidden(
                f"{identity} may not {method} {path}: dataplane tokens only register their "
                "dataplanes and follow their mesh's DNS records"
            )
        mesh = params.get("mesh")
        if mesh is not None and mesh != identity.mesh:
            raise Forbidden(f'{identity} may not act in mesh "{mesh}"')

    def require_admin(self, identity: Identity, action: str) -> None:
        """Only an admin may `action` (say, restore VIPs: they outlive any one resource)."""
        if not identity.is_admin:
            raise Forbidden(f"{identity} may not {action}: only an admin token may")

    async def check_put(self, identity: Identity, resource: Resource, where: str = "") -> None:
        """May `identity` create or replace `resource` (and whatever it replaces)?"""
        if identity.is_admin:
            return
        refused = await self._put_refusal(identity, resource)
        if refused:
            raise Forbidden(f"{where}{identity} may not {refused}")

    async def check_existing(
        self,
        identity: Identity,
        kind: str,
        mesh: str,
        name: str,
        action: str,
        *,
        fast: bool = False,
    ) -> None:
        """May `identity` `action` (delete, disconnect...) the stored resource? A resource
        that does not exist passes: the handler answers 404. `fast` (heartbeats) may take
        a dataplane's services from memory, which can lag the database by a moment."""
        if identity.is_admin:
            return
        if kind == "Dataplane":
            if identity.kind == DATAPLANE:
                services = await self._stored_services((mesh, name), fast=fast)
                if services is not None and not services <= identity.services:
                    raise Forbidden(
                        f'{identity} may not {action} dataplane "{name}": it serves '
                        f"{_quoted(services - identity.services)}"
                    )
                return
            stored_zone = await self._stored_zone(kind, mesh, name)
        elif identity.kind == ZONE and kind in ("ZoneIngress", "ZoneEgress"):
            stored_zone = await self._stored_zone(kind, mesh, name)
        else:
            raise Forbidden(f"{identity} may not {action} {kind} resources")
        if stored_zone not in (None, identity.zone):
            noun = "dataplane" if kind == "Dataplane" else kind
            raise Forbidden(f'{identity} may not {action} {noun} "{name}" of zone "{stored_zone}"')

    async def _put_refusal(self, identity: Identity, resource: Resource) -> str | None:
        """What a non-admin identity may not do in writing `resource`; None: nothing."""
        kind, name = resource.type, resource.name
        if isinstance(resource, Dataplane):
            label_zone = (resource.labels or {}).get(ZONE_TAG)
            if label_zone is not None and label_zone != self.zone:
                return f'register a dataplane labelled {ZONE_TAG}: "{label_zone}"'
            if identity.kind == ZONE:
                stored_zone = await self._stored_zone(kind, resource.mesh, name)
                if stored_zone not in (None, identity.zone):
                    return f'update dataplane "{name}" of zone "{stored_zone}"'
                return None
            if resource.mesh != identity.mesh:
                return f'register a dataplane in mesh "{resource.mesh}"'
            services = dataplane_services(resource)
            if not services:
                return f'register dataplane "{name}": it serves no {SERVICE_TAG}'
            if not services <= identity.services:
                other = services - identity.services
                noun = "service" if len(other) == 1 else "services"
                return f"register an inbound of {noun} {_quoted(other)}"
            stored = await self._stored_services((resource.mesh, name), fast=False)
            if stored is not None and not stored <= identity.services:
                return f'update dataplane "{name}": it serves {_quoted(stored - identity.services)}'
            return self._address_refusal(resource)
        if identity.kind == ZONE and isinstance(resource, ZoneIngress | ZoneEgress):
            if resource.zone not in (None, identity.zone):
                return f'write {kind} "{name}" of zone "{resource.zone}"'
            stored_zone = await self._stored_zone(kind, "", name)
            if stored_zone not in (None, identity.zone):
                return f'update {kind} "{name}" of zone "{stored_zone}"'
            return None
        return f"write {kind} resources"

    def _address_refusal(self, dataplane: Dataplane) -> str | None:
        """A dataplane token may not register at an address where dataplanes of another
        mesh are: the address would select neither mesh's DNS view any more, changing
        what that mesh's clients are answered (docs/dns.md). Loopback addresses are a
        host's own, shared by whatever runs there, and exempt."""
        for field_name, text in answered_addresses(dataplane):
            address = ip_address(text)
            if address.is_loopback:
                continue
            others = self._meshes_at(address) - {dataplane.mesh}
            if others:
                noun = "mesh" if len(others) == 1 else "meshes"
                return (
                    f"register a dataplane at {text} ({field_name}): dataplanes of {noun} "
                    f"{_quoted(others)} are there"
                )
        return None

    async def _stored_services(self, key: DataplaneKey, *, fast: bool) -> frozenset[str] | None:
        """The stored dataplane's services; None when there is no such dataplane."""
        if fast:
            known = self._known_services(key)
            if known:
                return known
        try:
            stored = await self.store.get_dataplane(*key)
        except NotFound:
            return None
        assert isinstance(stored.resource, Dataplane)
        return dataplane_services(stored.resource)

    async def _stored_zone(self, kind: str, mesh: str, name: str) -> str | None:
        """The zone a stored dataplane, ingress or egress belongs to (None: this one's)."""
        try:
            if kind == "Dataplane":
                stored = await self.store.get_dataplane(mesh, name)
            else:
                stored = await self.store.get_resource(kind, mesh, name)
        except NotFound:
            return None
        resource = stored.resource
        if isinstance(resource, Dataplane):
            return (resource.labels or {}).get(ZONE_TAG)
        return getattr(resource, "zone", None)
