"""Zones as a global control plane sees them: ``/zones+insights`` (each Zone with whether
its sync worker is in touch) and Kuma's ``/status/zones``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from registry.api.reading import OffsetQuery, SizeQuery
from registry.api.rendering import listing, render
from registry.store import Store

# A zone is online while its sync worker has been in touch this recently.
ZONE_OFFLINE_AFTER = 30.0


def zones_router(store: Store) -> APIRouter:
    """The routes above (the Zone resources themselves are at ``/zones``)."""
    router = APIRouter()

    @router.get("/zones+insights")
    async def zones_with_insights(
        request: Request, size: int = SizeQuery, offset: int = OffsetQuery
    ) -> dict:
        page = await store.list_resources("Zone", None, size=size, offset=offset)
        contacts = await store.zone_contacts()
        items = [
            {
                **render(item),
                "enabled": getattr(item.resource, "enabled", True),
                **contact_status(contacts.get(item.resource.name)),
            }
            for item in page.items
        ]
        return listing(request, page.total, items, size, offset)

    @router.get("/status/zones")
    async def zone_status() -> list[dict[str, Any]]:
        """Kuma's shape: each zone and whether its sync worker is in touch."""
        contacts = await store.zone_contacts()
        return [
            {"name": name, "active": contact_status(seen)["status"] == "Online"}
            for name, seen in sorted(contacts.items())
        ]

    return router


def contact_status(last_seen: datetime | None) -> dict[str, Any]:
    """A zone's status, Online or Offline, from its sync worker's last contact."""
    online = (
        last_seen is not None
        and (datetime.now(UTC) - last_seen).total_seconds() < ZONE_OFFLINE_AFTER
    )
    return {
        "status": "Online" if online else "Offline",
        "lastSeen": last_seen.isoformat() if last_seen else None,
    }
