"""Resource schemas in Kuma's Universal format, validated with precise messages.

Existing Kuma YAML must apply unchanged, so every field Kuma defines for these
resources is accepted (and stored); anything else is an error naming the field.

One module per group of resources; this one parses documents into them
(:func:`parse_resource`, :func:`parse_resources`) and names what they have in common.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from registry.errors import Cause, InvalidResource
from registry.limits import DocumentBudget, document_problem
from registry.schema.dataplane import (
    Dataplane,
    Gateway,
    Health,
    Inbound,
    Networking,
    Outbound,
)
from registry.schema.fields import (
    MAX_NAME_LENGTH,
    MAX_RESOURCES_PER_REQUEST,
    PROTOCOL_TAG,
    REGISTRATION,
    SERVICE_TAG,
    ZONE_TAG,
    resource_name_problem,
    service_name_problem,
    shown,
    workload_address_problem,
)
from registry.schema.mesh import (
    MTLS,
    Mesh,
)
from registry.schema.multizone import (
    AvailableService,
    Selector,
    TrafficPermission,
    Zone,
    ZoneEgress,
    ZoneEgressNetworking,
    ZoneIngress,
    ZoneIngressNetworking,
)
from registry.schema.services import (
    APP_PROTOCOLS,
    HostnameGenerator,
    MeshExternalService,
    MeshMultiZoneService,
    MeshService,
    MeshTrafficPermission,
    label_name_problem,
)

Resource = (
    Mesh
    | Dataplane
    | ZoneIngress
    | ZoneEgress
    | TrafficPermission
    | Zone
    | MeshService
    | MeshExternalService
    | MeshMultiZoneService
    | HostnameGenerator
    | MeshTrafficPermission
)
MeshScoped = (
    Dataplane
    | TrafficPermission
    | MeshService
    | MeshExternalService
    | MeshMultiZoneService
    | MeshTrafficPermission
)
# The service kinds: each gets a VIP from its own range and hostnames from generators.
ServiceKind = MeshService | MeshExternalService | MeshMultiZoneService
RESOURCE_TYPES: dict[str, type[Resource]] = {
    model.model_fields["type"].default: model
    for model in (
        Mesh,
        Dataplane,
        ZoneIngress,
        ZoneEgress,
        TrafficPermission,
        Zone,
        MeshService,
        MeshExternalService,
        MeshMultiZoneService,
        HostnameGenerator,
        MeshTrafficPermission,
    )
}


def field_path(loc: Iterable[Any]) -> str:
    """Render a pydantic error location as Kuma names fields: ``networking.inbound[0].port``."""
    path = ""
    for part in loc:
        if part == "[key]":
            continue  # pydantic's mark of a mapping key that failed: the key names it
        if isinstance(part, int) and not isinstance(part, bool):
            path += f"[{part}]"
        elif not isinstance(part, str):
            path += f"[{shown(part)}]"
        elif len(part) > MAX_NAME_LENGTH:
            path += f'[{json.dumps(part[:40])[:-1]}..."]'  # an unknown field's long name
        elif not part or "/" in part or "." in part or not part.isprintable():
            path += f"[{json.dumps(part)}]"
        else:
            path += f".{part}" if path else part
    return path


def _causes(error: ValidationError) -> list[Cause]:
    causes = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "literal_error":
            message = f"must be {item['ctx']['expected']}"
        causes.append(Cause(field=field_path(item["loc"]) or "(document)", message=message))
    return causes


def parse_resource(document: Any, *, budget: DocumentBudget | None = None) -> Resource:
    """Validate one Universal-format document being registered and return the resource it
    describes; ``budget`` is shared by the documents of one request."""
    if not isinstance(document, dict):
        raise InvalidResource(
            "Resource is not valid",
            [Cause("(document)", "must be a mapping with type, name and the resource's fields")],
        )
    kind = document.get("type")
    if kind is None:
        raise InvalidResource("Resource is not valid", [Cause("type", "field is required")])
    model = RESOURCE_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(sorted(RESOURCE_TYPES))
        raise InvalidResource(
            "Resource is not valid",
            [Cause("type", f"unknown resource type {shown(kind)}; expected one of {known}")],
        )
    problem = document_problem(document, budget or DocumentBudget())
    if problem is not None:
        location, message = problem
        raise InvalidResource(
            f"{kind} is not valid", [Cause(field_path(location) or "(document)", message)]
        )
    try:
        return model.model_validate(document, context=REGISTRATION)
    except ValidationError as error:
        raise InvalidResource(f"{kind} is not valid", _causes(error)) from None


def answered_addresses(resource: Resource) -> list[tuple[str, str]]:
    """The addresses DNS answers for `resource`, each with its field: (field, address)."""
    found: list[tuple[str, str]] = []
    networking = getattr(resource, "networking", None)
    if isinstance(networking, Networking):
        found.append(("networking.address", networking.address))
        if networking.advertised_address:
            found.append(("networking.advertisedAddress", networking.advertised_address))
        for index, inbound in enumerate(networking.inbound):
            if inbound.address:
                found.append((f"networking.inbound[{index}].address", inbound.address))
    elif isinstance(networking, ZoneIngressNetworking | ZoneEgressNetworking):
        found.append(("networking.address", networking.address))
        advertised = getattr(networking, "advertised_address", None)
        if advertised:
            found.append(("networking.advertisedAddress", advertised))
    return found


def identity(resource: Resource) -> dict[str, str]:
    """Type, mesh (for mesh-scoped resources) and name: what `apply` reports per resource."""
    if isinstance(resource, MeshScoped):
        return {"type": resource.type, "mesh": resource.mesh, "name": resource.name}
    return {"type": resource.type, "name": resource.name}


def parse_resources(documents: list[Any]) -> list[Resource]:
    """Validate every document before any is written; causes name the document's index."""
    if len(documents) > MAX_RESOURCES_PER_REQUEST:
        raise InvalidResource(
            "Resources are not valid; nothing was written",
            [
                Cause(
                    "items",
                    f"has {len(documents)} resources; at most {MAX_RESOURCES_PER_REQUEST} "
                    "are allowed in one request",
                )
            ],
        )
    resources: list[Resource] = []
    causes: list[Cause] = []
    budget = DocumentBudget()
    for index, document in enumerate(documents):
        try:
            resources.append(parse_resource(document, budget=budget))
        except InvalidResource as error:
            causes += [Cause(f"items[{index}].{c.field}", c.message) for c in error.causes]
            if budget.exhausted:
                break
    if causes:
        raise InvalidResource("Resources are not valid; nothing was written", causes)
    return resources


__all__ = [
    "APP_PROTOCOLS",
    "HostnameGenerator",
    "MeshExternalService",
    "MeshMultiZoneService",
    "MeshService",
    "MeshTrafficPermission",
    "ServiceKind",
    "label_name_problem",
    "AvailableService",
    "Dataplane",
    "Gateway",
    "Health",
    "Inbound",
    "MAX_NAME_LENGTH",
    "MAX_RESOURCES_PER_REQUEST",
    "MTLS",
    "Mesh",
    "MeshScoped",
    "Networking",
    "Outbound",
    "PROTOCOL_TAG",
    "RESOURCE_TYPES",
    "Resource",
    "SERVICE_TAG",
    "Selector",
    "TrafficPermission",
    "ZONE_TAG",
    "Zone",
    "ZoneEgress",
    "ZoneEgressNetworking",
    "ZoneIngress",
    "ZoneIngressNetworking",
    "answered_addresses",
    "field_path",
    "identity",
    "parse_resource",
    "parse_resources",
    "resource_name_problem",
    "service_name_problem",
    "workload_address_problem",
]
