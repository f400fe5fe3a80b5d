"""Resource schemas in Kuma's Universal format, validated with precise messages.

Existing Kuma YAML must apply unchanged, so every field Kuma defines for these
resources is accepted (and stored); anything else is an error naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from ipaddress import ip_address
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from registry.errors import Cause, InvalidResource

SERVICE_TAG = "kuma.io/service"
PROTOCOL_TAG = "kuma.io/protocol"
ZONE_TAG = "kuma.io/zone"

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
_TAG = re.compile(r"^[a-zA-Z0-9._\-:/]+$")
_TAG_VALUE = re.compile(r"^[a-zA-Z0-9._\-:/*]+$")


def _resource_name(value: str) -> str:
    if len(value) > 253:
        raise ValueError("must be at most 253 characters")
    if not _NAME.match(value):
        raise ValueError(
            "must consist of lower case letters, digits, '-', '.' or '_', "
            "and start and end with a letter or digit"
        )
    return value


def _ip(value: str) -> str:
    try:
        return str(ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IPv4 or IPv6 address") from None


def _tags(value: dict[str, str]) -> dict[str, str]:
    for key, tag_value in value.items():
        if not _TAG.match(key):
            raise ValueError(f"tag key {key!r} may only contain letters, digits and . _ - : /")
        if not _TAG_VALUE.match(tag_value):
            raise ValueError(
                f"tag {key!r} has value {tag_value!r}: values are non-empty and may only "
                "contain letters, digits and . _ - : / *"
            )
    return value


ResourceName = Annotated[str, AfterValidator(_resource_name)]
IPString = Annotated[str, AfterValidator(_ip)]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
Tags = Annotated[dict[str, str], AfterValidator(_tags)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        """The resource as Kuma would print it: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


class Health(_Model):
    ready: bool = True


class Inbound(_Model):
    port: Port
    service_port: Port | None = Field(None, alias="servicePort")
    service_address: IPString | None = Field(None, alias="serviceAddress")
    address: IPString | None = None
    name: str | None = None
    tags: Tags
    health: Health | None = None
    service_probe: dict[str, Any] | None = Field(None, alias="serviceProbe")
    state: Literal["Ready", "NotReady", "Ignored"] | None = None

    @field_validator("tags")
    @classmethod
    def _has_service(cls, tags: dict[str, str]) -> dict[str, str]:
        if not tags.get(SERVICE_TAG):
            raise ValueError(f'tag "{SERVICE_TAG}" has to exist')
        if "*" in tags[SERVICE_TAG]:
            raise ValueError(f'tag "{SERVICE_TAG}" cannot contain "*"')
        return tags

    @property
    def service(self) -> str:
        return self.tags[SERVICE_TAG]

    @property
    def ready(self) -> bool:
        if self.state is not None:
            return self.state == "Ready"
        return self.health is None or self.health.ready


class Outbound(_Model):
    """Accepted and stored as Kuma defines it; not used for DNS."""

    port: Port | None = None
    address: IPString | None = None
    service: str | None = None
    tags: Tags | None = None
    backend_ref: dict[str, Any] | None = Field(None, alias="backendRef")


class Gateway(_Model):
    tags: Tags
    type: Literal["DELEGATED", "BUILTIN"] | None = None


class Networking(_Model):
    address: IPString
    advertised_address: IPString | None = Field(None, alias="advertisedAddress")
    inbound: tuple[Inbound, ...] = ()
    outbound: tuple[Outbound, ...] = ()
    gateway: Gateway | None = None
    transparent_proxying: dict[str, Any] | None = Field(None, alias="transparentProxying")
    admin: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _inbounds(self) -> Networking:
        if not self.inbound and self.gateway is None:
            raise ValueError("has to contain at least one inbound or a gateway")
        seen: set[tuple[str, int]] = set()
        for inbound in self.inbound:
            key = (inbound.address or self.address, inbound.port)
            if key in seen:
                raise ValueError(f"two inbounds listen on {key[0]} port {key[1]}")
            seen.add(key)
        return self


class _Resource(_Model):
    name: ResourceName
    labels: dict[str, str] | None = None
    # What `kumactl get -o yaml` prints; accepted so its output applies again, never stored.
    creation_time: datetime | None = Field(None, alias="creationTime", exclude=True)
    modification_time: datetime | None = Field(None, alias="modificationTime", exclude=True)

    def dump(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"type": getattr(self, "type", None)}
        if hasattr(self, "mesh"):
            identity["mesh"] = self.mesh
        return {**identity, "name": self.name, **super().dump()}


class Dataplane(_Resource):
    type: Literal["Dataplane"] = "Dataplane"
    mesh: ResourceName = "default"
    networking: Networking
    metrics: dict[str, Any] | None = None
    probes: dict[str, Any] | None = None

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(inbound.service for inbound in self.networking.inbound))


class MTLS(_Model):
    enabled_backend: str | None = Field(None, alias="enabledBackend")
    backends: tuple[dict[str, Any], ...] | None = None
    skip_validation: bool | None = Field(None, alias="skipValidation")


class Mesh(_Resource):
    type: Literal["Mesh"] = "Mesh"
    mtls: MTLS | None = None
    logging: dict[str, Any] | None = None
    tracing: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    networking: dict[str, Any] | None = None
    routing: dict[str, Any] | None = None
    constraints: dict[str, Any] | None = None
    mesh_services: dict[str, Any] | None = Field(None, alias="meshServices")
    skip_creating_initial_policies: tuple[str, ...] | None = Field(
        None, alias="skipCreatingInitialPolicies"
    )

    @property
    def mtls_enabled(self) -> bool:
        return bool(self.mtls and self.mtls.enabled_backend)


class ZoneIngressNetworking(_Model):
    address: IPString
    port: Port
    advertised_address: IPString | None = Field(None, alias="advertisedAddress")
    advertised_port: Port | None = Field(None, alias="advertisedPort")
    admin: dict[str, Any] | None = None

    @property
    def public(self) -> tuple[str, int]:
        """Where other zones connect: the advertised address and port when given."""
        return self.advertised_address or self.address, self.advertised_port or self.port


class AvailableService(_Model):
    """A service a zone ingress offers: its tags, mesh and how many instances serve it."""

    tags: Tags
    instances: Annotated[int, Field(ge=0, strict=True)] = 0
    mesh: ResourceName = "default"
    external_service: bool | None = Field(None, alias="externalService")

    @field_validator("tags")
    @classmethod
    def _has_service(cls, tags: dict[str, str]) -> dict[str, str]:
        if not tags.get(SERVICE_TAG):
            raise ValueError(f'tag "{SERVICE_TAG}" has to exist')
        return tags

    @property
    def service(self) -> str:
        return self.tags[SERVICE_TAG]


class ZoneIngress(_Resource):
    """A zone's entry point for traffic from other zones (not mesh-scoped).

    ``availableServices`` are computed by its zone: written by the sync worker, not by
    whoever registers the ingress.
    """

    type: Literal["ZoneIngress"] = "ZoneIngress"
    zone: ResourceName | None = None
    networking: ZoneIngressNetworking
    available_services: tuple[AvailableService, ...] = Field((), alias="availableServices")


class ZoneEgressNetworking(_Model):
    address: IPString
    port: Port
    admin: dict[str, Any] | None = None


class ZoneEgress(_Resource):
    """A zone's way out: cross-zone traffic from this zone's dataplanes goes through it."""

    type: Literal["ZoneEgress"] = "ZoneEgress"
    zone: ResourceName | None = None
    networking: ZoneEgressNetworking


class Selector(_Model):
    match: Tags

    @field_validator("match")
    @classmethod
    def _has_service(cls, match: dict[str, str]) -> dict[str, str]:
        if not match.get(SERVICE_TAG):
            raise ValueError(f'tag "{SERVICE_TAG}" has to exist')
        return match

    @property
    def service(self) -> str:
        return self.match[SERVICE_TAG]


class TrafficPermission(_Resource):
    """Kuma's TrafficPermission: which services (sources) may reach which (destinations)."""

    type: Literal["TrafficPermission"] = "TrafficPermission"
    mesh: ResourceName = "default"
    sources: Annotated[tuple[Selector, ...], Field(min_length=1)]
    destinations: Annotated[tuple[Selector, ...], Field(min_length=1)]
    conf: dict[str, Any] | None = None


class Zone(_Resource):
    """A zone known to the global control plane; disabling it hides its ingresses."""

    type: Literal["Zone"] = "Zone"
    enabled: bool = True


Resource = Mesh | Dataplane | ZoneIngress | ZoneEgress | TrafficPermission | Zone
MeshScoped = Dataplane | TrafficPermission
RESOURCE_TYPES: dict[str, type[Resource]] = {
    model.model_fields["type"].default: model
    for model in (Mesh, Dataplane, ZoneIngress, ZoneEgress, TrafficPermission, Zone)
}


def field_path(loc: Iterable[int | str]) -> str:
    """Render a pydantic error location as Kuma names fields: ``networking.inbound[0].port``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "/" in part or "." in part:
            path += f'["{part}"]'
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


def parse_resource(document: Any) -> Resource:
    """Validate one Universal-format document and return the resource it describes."""
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
            [Cause("type", f"unknown resource type {kind!r}; expected one of {known}")],
        )
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise InvalidResource(f"{kind} is not valid", _causes(error)) from None


def identity(resource: Resource) -> dict[str, str]:
    """Type, mesh (for mesh-scoped resources) and name: what `apply` reports per resource."""
    if isinstance(resource, MeshScoped):
        return {"type": resource.type, "mesh": resource.mesh, "name": resource.name}
    return {"type": resource.type, "name": resource.name}


def parse_resources(documents: list[Any]) -> list[Resource]:
    """Validate every document before any is written; causes name the document's index."""
    resources: list[Resource] = []
    causes: list[Cause] = []
    for index, document in enumerate(documents):
        try:
            resources.append(parse_resource(document))
        except InvalidResource as error:
            causes += [Cause(f"items[{index}].{c.field}", c.message) for c in error.causes]
    if causes:
        raise InvalidResource("Resources are not valid; nothing was written", causes)
    return resources
