"""`meshdns export-zone`: a mesh's zone file, read from the registry as a DNS server would."""

from __future__ import annotations

from dataclasses import replace

from dnsserver.zonefile import render, zone_records
from meshdns.settings import Settings
from meshdns.wiring import build_follower, build_handler, build_store
from registry.errors import RegistryError
from registry.store.database import create_engine


class MeshNotFound(RegistryError):
    """The mesh does not exist."""


async def export_zone(settings: Settings, mesh: str) -> str:
    """The zone of ``mesh`` as a zone file: SOA (serial = registry revision), NS and glue,
    VIPs, endpoints, SRV and ``<hex>.addr`` records, dotted aliases."""
    # Built as DNS process 0 is, answering in `mesh` as a query from outside it would be.
    settings = replace(settings, default_mesh=mesh)
    engine = create_engine(settings.database_url)
    try:
        handler = build_handler(settings)
        follower = build_follower(settings, build_store(settings, engine), handler.update)
        await follower.load()
    finally:
        await engine.dispose()
    if mesh not in handler.zones.meshes:
        raise MeshNotFound(f"mesh {mesh!r} does not exist; see `meshdns get meshes`")
    zone = handler.transfer_zone()
    return render(zone_records(zone), zone.origin)
