"""`meshdns export-zone`: a mesh's zone file, read from the registry as a DNS server would."""

from __future__ import annotations

from dataclasses import replace

from dnsserver.handler import Handler
from dnsserver.zonefile import render, zone_records
from meshdns.app import vip_settings, zone_config
from meshdns.settings import Settings
from registry.errors import RegistryError
from registry.feed.follower import RegistryFollower
from registry.store import Store
from registry.store.database import create_engine


class MeshNotFound(RegistryError):
    """The mesh does not exist."""


async def export_zone(settings: Settings, mesh: str) -> str:
    """The zone of ``mesh`` as a zone file: SOA (serial = registry revision), NS and glue,
    VIPs, endpoints, SRV and ``<hex>.addr`` records, dotted aliases."""
    engine = create_engine(settings.database_url)
    try:
        handler = Handler(replace(zone_config(settings), default_mesh=mesh))
        follower = RegistryFollower(Store(engine, vip_settings(settings)), handler.update)
        await follower.load()
    finally:
        await engine.dispose()
    if mesh not in handler.zones.meshes:
        raise MeshNotFound(f"mesh {mesh!r} does not exist; see `meshdns get meshes`")
    zone = handler.transfer_zone()
    return render(zone_records(zone), zone.origin)
