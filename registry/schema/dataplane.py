"""Kuma's Dataplane: where a workload is, and the services its inbounds serve."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from registry.schema.fields import (
    MAX_INBOUNDS,
    MAX_OUTBOUNDS,
    SERVICE_TAG,
    IPString,
    Model,
    NamedResource,
    Port,
    ResourceName,
    Tags,
    Text,
    WorkloadIP,
    at_most,
    service_makes_dns_name,
)


class Health(Model):
    ready: bool = True


class Inbound(Model):
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
        return service_makes_dns_name(tags, info)

    @property
    def service(self) -> str:
        return self.tags[SERVICE_TAG]

    @property
    def ready(self) -> bool:
        if self.state is not None:
            return self.state == "Ready"
        return self.health is None or self.health.ready


class Outbound(Model):
    """Accepted and stored as Kuma defines it; not used for DNS."""

    port: Port | None = None
    address: IPString | None = None
    service: Text | None = None
    tags: Tags | None = None
    backend_ref: dict[str, Any] | None = Field(None, alias="backendRef")


class Gateway(Model):
    tags: Tags
    type: Literal["DELEGATED", "BUILTIN"] | None = None


class Networking(Model):
    address: WorkloadIP
    advertised_address: WorkloadIP | None = Field(None, alias="advertisedAddress")
    inbound: Annotated[tuple[Inbound, ...], at_most(MAX_INBOUNDS, "inbounds")] = ()
    outbound: Annotated[tuple[Outbound, ...], at_most(MAX_OUTBOUNDS, "outbounds")] = ()
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


class Dataplane(NamedResource):
    type: Literal["Dataplane"] = "Dataplane"
    mesh: ResourceName = "default"
    networking: Networking
    metrics: dict[str, Any] | None = None
    probes: dict[str, Any] | None = None

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(inbound.service for inbound in self.networking.inbound))
