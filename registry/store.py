"""The registry store: resources in SQL, returned as plain frozen values.

INTERFACE STUB: the bodies are being written; the signatures are the contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from sqlalchemy.ext.asyncio import AsyncEngine

from registry.schema import Dataplane, Mesh, Resource
from registry.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Stored:
    """A resource as stored, with Kuma's creation and modification times."""

    resource: Resource
    creation_time: datetime
    modification_time: datetime


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing: the items and the total count matching the filter."""

    total: int
    items: tuple[Stored, ...]


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """A service of a mesh as `GET /meshes/{mesh}/services` shows it."""

    name: str
    vip: IPv4Address | None
    vip6: IPv6Address | None
    endpoints: int  # ready inbounds of the service
    dataplanes: int


@dataclass(frozen=True, slots=True)
class VipSettings:
    cidr: IPv4Network = IPv4Network("240.0.0.0/4")
    cidr6: IPv6Network | None = None
    quarantine_seconds: float = 3600.0


class Store:
    """Reads and writes the registry; every write is one transaction."""

    def __init__(self, engine: AsyncEngine, vips: VipSettings | None = None) -> None:
        self.engine = engine
        self.vips = vips or VipSettings()

    async def put(self, resource: Resource) -> bool:
        """Create or replace one resource; True when it was created."""
        raise NotImplementedError

    async def put_many(self, resources: Sequence[Resource]) -> list[bool]:
        """Create or replace all of them in one transaction, or none; True where created."""
        raise NotImplementedError

    async def get_mesh(self, name: str) -> Stored:
        raise NotImplementedError

    async def list_meshes(self, size: int = 100, offset: int = 0) -> Page:
        raise NotImplementedError

    async def delete_mesh(self, name: str) -> None:
        raise NotImplementedError

    async def get_dataplane(self, mesh: str, name: str) -> Stored:
        raise NotImplementedError

    async def list_dataplanes(
        self, mesh: str, size: int = 100, offset: int = 0, tags: Mapping[str, str] | None = None
    ) -> Page:
        raise NotImplementedError

    async def delete_dataplane(self, mesh: str, name: str) -> None:
        raise NotImplementedError

    async def list_services(self, mesh: str) -> list[ServiceSummary]:
        raise NotImplementedError

    async def ensure_mesh(self, name: str) -> bool:
        """Create mesh `name` when no mesh exists at all (Kuma's default mesh); True if created."""
        raise NotImplementedError

    async def revision(self) -> int:
        raise NotImplementedError

    async def load_snapshot(self) -> Snapshot:
        raise NotImplementedError


__all__ = ["Dataplane", "Mesh", "Page", "ServiceSummary", "Store", "Stored", "VipSettings"]
