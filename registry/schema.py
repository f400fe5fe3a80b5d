"""Resource schemas in Kuma's Universal format, validated with precise messages.

Existing Kuma YAML must apply unchanged, so every field Kuma defines for these
resources is accepted (and stored); anything else is an error naming the field.

Sizes and counts are bounded, and service names must make DNS names, for resources being
registered (:func:`parse_resource`): what the registry already holds is read back as it
was stored, so a tighter bound never makes a stored resource unreadable (docs/decisions.md,
"Input limits and fuzzing (issue 8)").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from registry.errors import Cause, InvalidResource
from registry.limits import DocumentBudget, document_problem

SERVICE_TAG = "kuma.io/service"
PROTOCOL_TAG = "kuma.io/protocol"
ZONE_TAG = "kuma.io/zone"

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
_TAG = re.compile(r"^[a-zA-Z0-9._\-:/]+$")
_TAG_VALUE = re.compile(r"^[a-zA-Z0-9._\-:/*]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Bounds on a resource being registered. Kuma sets few hard limits; these keep the cost
# of one resource (in the DNS tables, the snapshot, every agent) bounded.
MAX_NAME_LENGTH = 253  # a DNS name's: resource names, tag keys and values, labels
MAX_LABEL_LENGTH = 63  # one DNS label
MAX_TAGS = 64  # per inbound, gateway, selector, outbound or available service
MAX_LABELS = 64
MAX_INBOUNDS = 100
MAX_OUTBOUNDS = 1000
MAX_SELECTORS = 1000  # sources, and destinations, of one TrafficPermission
MAX_AVAILABLE_SERVICES = 10_000  # what one zone ingress offers
MAX_INSTANCES = 2**31 - 1
MAX_RESOURCES_PER_REQUEST = 10_000  # documents of one POST /apply

# Passed to validation by parse_resource: the resource is being registered.
_REGISTRATION = {"registration": True}


def _registering(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and info.context.get("registration") is True


def resource_name_problem(value: str) -> str | None:
    """Why `value` cannot be a resource's name; None if it can."""
    if len(value) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters"
    if not _NAME.match(value):
        return (
            "must consist of lower case letters, digits, '-', '.' or '_', "
            "and start and end with a letter or digit"
        )
    return None


def _resource_name(value: str) -> str:
    problem = resource_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _ip(value: str, info: ValidationInfo) -> str:
    try:
        address = ip_address(value)
    except ValueError:
        raise ValueError(f"{_shown(value)} is not a valid IPv4 or IPv6 address") from None
    if _registering(info) and isinstance(address, IPv6Address) and address.scope_id is not None:
        raise ValueError(
            f"{_shown(value)} is a scoped IPv6 address: its %zone names a link of one host, "
            "which other hosts cannot use; give the address without it"
        )
    return str(address)


# Class E (240.0.0.0/4): reserved, never a host's; meshdns's virtual IPs come from it.
_RESERVED_V4 = IPv4Network("240.0.0.0/4")


def workload_address_problem(address: IPv4Address | IPv6Address) -> str | None:
    """Why ``address`` cannot be where a workload is reached; None if it can be.

    Loopback is allowed: single-machine set-ups register their workloads there.
    """
    if address.is_unspecified:
        return "is the unspecified address, which names no host"
    if address.is_multicast:
        return "is a multicast address, which names a group, not one workload"
    if isinstance(address, IPv4Address) and address in _RESERVED_V4:
        what = "the broadcast address" if address.packed == b"\xff" * 4 else "reserved"
        return f"is {what} (240.0.0.0/4 holds no hosts; meshdns takes its virtual IPs there)"
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return f"is an IPv4-mapped IPv6 address; give the IPv4 address {address.ipv4_mapped}"
    return None


def _workload_ip(value: str, info: ValidationInfo) -> str:
    normal = _ip(value, info)
    if _registering(info):
        problem = workload_address_problem(ip_address(normal))
        if problem is not None:
            raise ValueError(f"{_shown(value)} {problem}")
    return normal


def _at_most(limit: int, what: str) -> BeforeValidator:
    """A check that a list or mapping being registered holds at most ``limit`` items,
    made before its items are validated."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if _registering(info) and isinstance(value, list | tuple | dict) and len(value) > limit:
            raise ValueError(f"has {len(value)} {what}; at most {limit} are allowed")
        return value

    return BeforeValidator(check)


def _tags(value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    registering = _registering(info)
    for key, tag_value in value.items():
        if not _TAG.match(key):
            raise ValueError(
                f"tag key {_shown(key)} may only contain letters, digits and . _ - : /"
            )
        if not _TAG_VALUE.match(tag_value):
            raise ValueError(
                f"tag {_shown(key)} has value {_shown(tag_value)}: values are non-empty and "
                "may only contain letters, digits and . _ - : / *"
            )
        if registering and max(len(key), len(tag_value)) > MAX_NAME_LENGTH:
            raise ValueError(
                f"tag {_shown(key)}: keys and values are at most {MAX_NAME_LENGTH} characters"
            )
    return value


def _text(value: str, info: ValidationInfo) -> str:
    """Free text that is shown (labels, names of inbounds and backends): one line, bounded."""
    if _registering(info):
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(f"must be at most {MAX_NAME_LENGTH} characters")
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters (newlines, tabs, NUL...)")
    return value


def _labels(value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    if not _registering(info):
        return value
    for key, label in value.items():
        if not key:
            raise ValueError("label keys must not be empty")
        for text in (key, label):
            if len(text) > MAX_NAME_LENGTH:
                raise ValueError(
                    f"label {_shown(key)}: keys and values are at most {MAX_NAME_LENGTH} characters"
                )
            if _CONTROL.search(text):
                raise ValueError(
                    f"label {_shown(key)}: keys and values must not contain control characters"
                )
    return value


def _shown(value: object) -> str:
    """``value`` quoted for a message, shortened when long: messages echo bounded input."""
    text = repr(value)
    if len(text) <= 48:
        return text
    if isinstance(value, str):
        return f"{value[:40]!r}... ({len(value)} characters)"
    return f"{text[:40]}..."


def service_name_problem(service: str) -> str | None:
    """Why ``service`` (a kuma.io/service value) cannot be given a DNS name; None if it can.

    The DNS answers a service at ``<service>.<domain>``, one label, and Kuma's
    ``a_b_c`` names also at ``a.b.c.<domain>``, one label per part. A name must make at
    least one of them: at most 63 characters, or ``_``-separated parts of at most 63
    each; never a dot, which would split the label. The tag's character set (letters,
    digits and ``_ - : /``) is checked with every tag.
    """
    if len(service) > MAX_NAME_LENGTH:
        return f"is {len(service)} characters long; at most {MAX_NAME_LENGTH}"
    if "*" in service:
        return 'cannot contain "*"'
    if "." in service:
        return (
            f"is {_shown(service)}: a service name is one DNS label (<service>.mesh), so it "
            "cannot contain '.'; Kuma's '_' form answers at the dotted name too "
            "(a_b answers at a_b.mesh and a.b.mesh)"
        )
    if len(service) <= MAX_LABEL_LENGTH:
        return None
    parts = service.split("_")
    if len(parts) > 1 and all(0 < len(part) <= MAX_LABEL_LENGTH for part in parts):
        return None
    return (
        f"is {len(service)} characters long: a service name is one DNS label of at most "
        f"{MAX_LABEL_LENGTH} characters (<service>.mesh), or Kuma's a_b_c form whose "
        f"parts are labels of at most {MAX_LABEL_LENGTH} characters each (a.b.c.mesh)"
    )


def _service_makes_dns_name(tags: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    problem = service_name_problem(tags[SERVICE_TAG]) if _registering(info) else None
    if problem is not None:
        raise ValueError(f'tag "{SERVICE_TAG}" {problem}')
    return tags


ResourceName = Annotated[str, AfterValidator(_resource_name)]
IPString = Annotated[str, AfterValidator(_ip)]
# An address a workload is reached at (answered in DNS): no unspecified, multicast,
# broadcast, class E (virtual IP) or IPv4-mapped address.
WorkloadIP = Annotated[str, AfterValidator(_workload_ip)]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
Tags = Annotated[dict[str, str], _at_most(MAX_TAGS, "tags"), AfterValidator(_tags)]
Text = Annotated[str, AfterValidator(_text)]
Labels = Annotated[dict[str, str], _at_most(MAX_LABELS, "labels"), AfterValidator(_labels)]


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
    address: WorkloadIP | None = None
    name: Text | None = None
    tags: Tags
    health: Health | None = None
    service_probe: dict[str, Any] | None = Field(None, alias="serviceProbe")
    state: Literal["Ready", "NotReady", "Ignored"] | None = None

    @field_validator("tags")
    @classmethod
    def _has_service(cls, tags: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if not tags.get(SERVICE_TAG):
            raise ValueError(f'tag "{SERVICE_TAG}" has to exist')
        if "*" in tags[SERVICE_TAG]:
            raise ValueError(f'tag "{SERVICE_TAG}" cannot contain "*"')
        return _service_makes_dns_name(tags, info)

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
    service: Text | None = None
    tags: Tags | None = None
    backend_ref: dict[str, Any] | None = Field(None, alias="backendRef")


class Gateway(_Model):
    tags: Tags
    type: Literal["DELEGATED", "BUILTIN"] | None = None


class Networking(_Model):
    address: WorkloadIP
    advertised_address: WorkloadIP | None = Field(None, alias="advertisedAddress")
    inbound: Annotated[tuple[Inbound, ...], _at_most(MAX_INBOUNDS, "inbounds")] = ()
    outbound: Annotated[tuple[Outbound, ...], _at_most(MAX_OUTBOUNDS, "outbounds")] = ()
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
    labels: Labels | None = None
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
    enabled_backend: Text | None = Field(None, alias="enabledBackend")
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
    skip_creating_initial_policies: tuple[Text, ...] | None = Field(
        None, alias="skipCreatingInitialPolicies"
    )

    @property
    def mtls_enabled(self) -> bool:
        return bool(self.mtls and self.mtls.enabled_backend)


class ZoneIngressNetworking(_Model):
    address: WorkloadIP
    port: Port
    advertised_address: WorkloadIP | None = Field(None, alias="advertisedAddress")
    advertised_port: Port | None = Field(None, alias="advertisedPort")
    admin: dict[str, Any] | None = None

    @property
    def public(self) -> tuple[str, int]:
        """Where other zones connect: the advertised address and port when given."""
        return self.advertised_address or self.address, self.advertised_port or self.port


class AvailableService(_Model):
    """A service a zone ingress offers: its tags, mesh and how many instances serve it."""

    tags: Tags
    instances: Annotated[int, Field(ge=0, le=MAX_INSTANCES, strict=True)] = 0
    mesh: ResourceName = "default"
    external_service: bool | None = Field(None, alias="externalService")

    @field_validator("tags")
    @classmethod
    def _has_service(cls, tags: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if not tags.get(SERVICE_TAG):
            raise ValueError(f'tag "{SERVICE_TAG}" has to exist')
        return _service_makes_dns_name(tags, info)

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
    available_services: Annotated[
        tuple[AvailableService, ...],
        _at_most(MAX_AVAILABLE_SERVICES, "available services"),
    ] = Field((), alias="availableServices")


class ZoneEgressNetworking(_Model):
    address: WorkloadIP
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
    sources: Annotated[
        tuple[Selector, ...], Field(min_length=1), _at_most(MAX_SELECTORS, "sources")
    ]
    destinations: Annotated[
        tuple[Selector, ...], Field(min_length=1), _at_most(MAX_SELECTORS, "destinations")
    ]
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


def field_path(loc: Iterable[Any]) -> str:
    """Render a pydantic error location as Kuma names fields: ``networking.inbound[0].port``."""
    path = ""
    for part in loc:
        if part == "[key]":
            continue  # pydantic's mark of a mapping key that failed: the key names it
        if isinstance(part, int) and not isinstance(part, bool):
            path += f"[{part}]"
        elif not isinstance(part, str):
            path += f"[{_shown(part)}]"
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
            [Cause("type", f"unknown resource type {_shown(kind)}; expected one of {known}")],
        )
    problem = document_problem(document, budget or DocumentBudget())
    if problem is not None:
        location, message = problem
        raise InvalidResource(
            f"{kind} is not valid", [Cause(field_path(location) or "(document)", message)]
        )
    try:
        return model.model_validate(document, context=_REGISTRATION)
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
