"""What multi-zone deployments add: zone ingresses and egresses, zones, and the
TrafficPermissions that gate cross-zone traffic."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from registry.schema.fields import (
    MAX_AVAILABLE_SERVICES,
    MAX_INSTANCES,
    MAX_SELECTORS,
    SERVICE_TAG,
    Model,
    NamedResource,
    Port,
    ResourceName,
    Tags,
    WorkloadIP,
    at_most,
    service_makes_dns_name,
)


class ZoneIngressNetworking(Model):
    address: WorkloadIP
    port: Port
    advertised_address: WorkloadIP | None = Field(None, alias="advertisedAddress")
    advertised_port: Port | None = Field(None, alias="advertisedPort")
    admin: dict[str, Any] | None = None

    @property
    def public(self) -> tuple[str, int]:
        """Where other zones connect: the advertised address and port when given."""
        return self.advertised_address or self.address, self.advertised_port or self.port


class AvailableService(Model):
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
        return service_makes_dns_name(tags, info)

    @property
    def service(self) -> str:
        return self.tags[SERVICE_TAG]


class ZoneIngress(NamedResource):
    """A zone's entry point for traffic from other zones (not mesh-scoped).

    ``availableServices`` are computed by its zone: written by the sync worker, not by
    whoever registers the ingress.
    """

    type: Literal["ZoneIngress"] = "ZoneIngress"
    zone: ResourceName | None = None
    networking: ZoneIngressNetworking
    available_services: Annotated[
        tuple[AvailableService, ...],
        at_most(MAX_AVAILABLE_SERVICES, "available services"),
    ] = Field((), alias="availableServices")


class ZoneEgressNetworking(Model):
    address: WorkloadIP
    port: Port
    admin: dict[str, Any] | None = None


class ZoneEgress(NamedResource):
    """A zone's way out: cross-zone traffic from this zone's dataplanes goes through it."""

    type: Literal["ZoneEgress"] = "ZoneEgress"
    zone: ResourceName | None = None
    networking: ZoneEgressNetworking


class Selector(Model):
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


class TrafficPermission(NamedResource):
    """Kuma's TrafficPermission: which services (sources) may reach which (destinations)."""

    type: Literal["TrafficPermission"] = "TrafficPermission"
    mesh: ResourceName = "default"
    sources: Annotated[tuple[Selector, ...], Field(min_length=1), at_most(MAX_SELECTORS, "sources")]
    destinations: Annotated[
        tuple[Selector, ...], Field(min_length=1), at_most(MAX_SELECTORS, "destinations")
    ]
    conf: dict[str, Any] | None = None


class Zone(NamedResource):
    """A zone known to the global control plane; disabling it hides its ingresses."""

    type: Literal["Zone"] = "Zone"
    enabled: bool = True
