"""The pieces every resource schema is made of: bounded names, tags, labels and addresses,
and the base models.

Sizes and counts are bounded, and addresses must be a workload's, for resources being
registered (validated with the REGISTRATION context): what the registry already holds is
read back as it was stored, so a tighter bound never makes a stored resource unreadable.
"""

from __future__ import annotations

import re
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

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
REGISTRATION = {"registration": True}


def registering(info: ValidationInfo) -> bool:
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
        raise ValueError(f"{shown(value)} is not a valid IPv4 or IPv6 address") from None
    if registering(info) and isinstance(address, IPv6Address) and address.scope_id is not None:
        raise ValueError(
            f"{shown(value)} is a scoped IPv6 address: its %zone names a link of one host, "
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
    if registering(info):
        problem = workload_address_problem(ip_address(normal))
        if problem is not None:
            raise ValueError(f"{shown(value)} {problem}")
    return normal


def at_most(limit: int, what: str) -> BeforeValidator:
    """A check that a list or mapping being registered holds at most ``limit`` items,
    made before its items are validated."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if registering(info) and isinstance(value, list | tuple | dict) and len(value) > limit:
            raise ValueError(f"has {len(value)} {what}; at most {limit} are allowed")
        return value

    return BeforeValidator(check)


def _tags(value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    is_registering = registering(info)
    for key, tag_value in value.items():
        if not _TAG.match(key):
            raise ValueError(f"tag key {shown(key)} may only contain letters, digits and . _ - : /")
        if not _TAG_VALUE.match(tag_value):
            raise ValueError(
                f"tag {shown(key)} has value {shown(tag_value)}: values are non-empty and "
                "may only contain letters, digits and . _ - : / *"
            )
        if is_registering and max(len(key), len(tag_value)) > MAX_NAME_LENGTH:
            raise ValueError(
                f"tag {shown(key)}: keys and values are at most {MAX_NAME_LENGTH} characters"
            )
    return value


def _text(value: str, info: ValidationInfo) -> str:
    """Free text that is shown (labels, names of inbounds and backends): one line, bounded."""
    if registering(info):
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(f"must be at most {MAX_NAME_LENGTH} characters")
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters (newlines, tabs, NUL...)")
    return value


def _labels(value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    if not registering(info):
        return value
    for key, label in value.items():
        if not key:
            raise ValueError("label keys must not be empty")
        for text in (key, label):
            if len(text) > MAX_NAME_LENGTH:
                raise ValueError(
                    f"label {shown(key)}: keys and values are at most {MAX_NAME_LENGTH} characters"
                )
            if _CONTROL.search(text):
                raise ValueError(
                    f"label {shown(key)}: keys and values must not contain control characters"
                )
    return value


def shown(value: object) -> str:
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
            f"is {shown(service)}: a service name is one DNS label (<service>.mesh), so it "
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


def service_makes_dns_name(tags: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    problem = service_name_problem(tags[SERVICE_TAG]) if registering(info) else None
    if problem is not None:
        raise ValueError(f'tag "{SERVICE_TAG}" {problem}')
    return tags


ResourceName = Annotated[str, AfterValidator(_resource_name)]
IPString = Annotated[str, AfterValidator(_ip)]
# An address a workload is reached at (answered in DNS): no unspecified, multicast,
# broadcast, class E (virtual IP) or IPv4-mapped address.
WorkloadIP = Annotated[str, AfterValidator(_workload_ip)]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
Tags = Annotated[dict[str, str], at_most(MAX_TAGS, "tags"), AfterValidator(_tags)]
Text = Annotated[str, AfterValidator(_text)]
Labels = Annotated[dict[str, str], at_most(MAX_LABELS, "labels"), AfterValidator(_labels)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        """The resource as Kuma would print it: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


class NamedResource(Model):
    name: ResourceName
    labels: Labels | None = None
    # What `kumactl get -o yaml` prints; accepted so its output applies again, never stored.
    creation_time: datetime | None = Field(None, alias="creationTime", exclude=True)
    modification_time: datetime | None = Field(None, alias="modificationTime", exclude=True)
    # Kuma's resource identifier (`kumactl get -o yaml` prints it since 2.13): derived, so
    # accepted and never stored.
    kri: str | None = Field(None, exclude=True)

    def dump(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"type": getattr(self, "type", None)}
        field = type(self).model_fields.get("mesh")
        if field is not None and not field.exclude:  # mesh-scoped (not an ignored `mesh:`)
            identity["mesh"] = getattr(self, "mesh", None)
        return {**identity, "name": self.name, **super().dump()}
