"""``POST /apply``: many resources written in one transaction, all of them or none (for
`meshdns apply`)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from registry.api.access import caller
from registry.api.labels import with_computed_labels
from registry.api.reading import read_document
from registry.api.writes import Writes
from registry.auth.authorization import Guard
from registry.auth.scopes import Scope, requires
from registry.errors import Cause, InvalidResource
from registry.schema import Mesh, identity, parse_resources
from registry.schema.vips import VIRTUAL_IPS, parse_virtual_ips
from registry.store import Store
from registry.write_rules import check_write


def apply_router(store: Store, guard: Guard, writes: Writes) -> APIRouter:
    """The route above: each item is checked (addresses, the caller's scope, the mode)
    before any is written."""
    router = APIRouter()

    @router.post("/apply")
    @requires(Scope.DATAPLANE_WRITE)
    async def apply(request: Request) -> dict:
        """Write many resources in one transaction: all of them or none (for `meshdns apply`)."""
        document = await read_document(request)
        items = document.get("items") if isinstance(document, dict) else None
        if not isinstance(items, list) or not items:
            raise InvalidResource(
                "Request is not valid", [Cause("items", "a non-empty list of resources")]
            )
        # meshdns's own VirtualIPs documents (an export's VIPs) are no resources: taken
        # apart, and written first, so that the services written next take them back.
        recorded = [
            parse_virtual_ips(item, where=f"items[{index}].")
            for index, item in enumerate(items)
            if isinstance(item, dict) and item.get("type") == VIRTUAL_IPS
        ]
        documents = [
            item
            for item in items
            if not (isinstance(item, dict) and item.get("type") == VIRTUAL_IPS)
        ]
        if recorded:
            # Only an admin restores VIPs; and only where VIPs are allocated.
            guard.require_admin(caller(request), "restore VIPs")
        resources = (
            [
                with_computed_labels(resource, store.mode, guard.zone)
                for resource in parse_resources(documents)
            ]
            if documents
            else []
        )
        for index, resource in enumerate(resources):
            store.check_addresses(resource, where=f"items[{index}].")
        who = caller(request)
        for index, resource in enumerate(resources):
            await guard.check_put(who, resource, where=f"items[{index}]: ")
        for resource in resources:
            check_write(store.mode, resource.type)
        # Meshes first, so a batch may hold a mesh and its dataplanes in any order.
        order = sorted(range(len(resources)), key=lambda i: not isinstance(resources[i], Mesh))
        created = [False] * len(resources)
        kept: list[int] = []
        async with writes.transaction() as transaction:
            meshes = [index for index in order if isinstance(resources[index], Mesh)]
            for index in meshes:
                created[index] = await store.put_in(transaction, resources[index])
            for vips in recorded:
                kept.append(await store.reserve_vips(transaction, vips))
            for index in order[len(meshes) :]:
                created[index] = await store.put_in(transaction, resources[index])
        return {
            "items": [
                {**identity(resource), "status": "Created" if new else "Updated"}
                for resource, new in zip(resources, created, strict=True)
            ]
            + [
                {
                    "type": VIRTUAL_IPS,
                    "mesh": vips.mesh,
                    "name": vips.name,
                    "status": f"Recorded {count} of {len(vips.vips)}",
                }
                for vips, count in zip(recorded, kept, strict=True)
            ]
        }

    return router
