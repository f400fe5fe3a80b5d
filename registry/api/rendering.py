"""How the API shows what it read: resources and services as Kuma's API shows them, and
listings in Kuma's envelope ``{total, items, next}``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request

from registry.store import ServiceSummary, Stored

# The `status` of a resource of a service kind, by (kind, mesh, name), as Kuma's API shows
# it; None: none to show. Computed from the registry's view, never stored.
StatusOf = Callable[[str, str, str], dict[str, Any] | None]


def render(stored: Stored) -> dict[str, Any]:
    """A stored resource as Kuma's API shows it."""
    body = stored.resource.dump()
    head: dict[str, Any] = {key: body.pop(key) for key in ("type", "mesh", "name") if key in body}
    return {
        **head,
        "creationTime": stored.creation_time.isoformat(),
        "modificationTime": stored.modification_time.isoformat(),
        **body,
    }


def render_service(
    mesh: str, service: ServiceSummary, local_zone: str | None = None
) -> dict[str, Any]:
    """A service as `GET /meshes/{mesh}/services` lists it; ``zones`` are its endpoints by
    zone, this control plane's own under its zone's name (standalone: "local")."""
    return {
        "type": "Service",
        "mesh": mesh,
        "name": service.name,
        "vip": str(service.vip) if service.vip else None,
        "vip6": str(service.vip6) if service.vip6 else None,
        "endpoints": service.endpoints,
        "dataplanes": service.dataplanes,
        "zones": {
            (zone if zone is not None else local_zone or "local"): count
            for zone, count in sorted(service.zones.items(), key=lambda item: item[0] or "")
        },
    }


def listing(request: Request, total: int, items: list[Any], size: int, offset: int) -> dict:
    """One page of a listing: `next` is the URL of the following page, None on the last."""
    following = offset + size
    next_url = (
        str(request.url.include_query_params(offset=following, size=size))
        if following < total
        else None
    )
    return {"total": total, "items": items, "next": next_url}
