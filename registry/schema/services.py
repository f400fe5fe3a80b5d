"""Kuma's current service model (2.9+): MeshService, MeshExternalService,
MeshMultiZoneService, HostnameGenerator and MeshTrafficPermission, in Kuma's Universal
format (``spec`` and, for the services, a ``status`` that is computed: accepted in a
body, as ``kumactl get -o yaml`` prints it, and ignored).

Names of the three service kinds must be RFC 1035 labels (Kuma deprecates others since
2.10 and refuses them from 3.0): they become DNS labels of their hostnames.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt, field_validator, model_validator

from registry.schema.fields import (
    MAX_LABEL_LENGTH,
    MAX_SELECTORS,
    Labels,
    Model,
    NamedResource,
    Port,
    ResourceName,
    Tags,
    Text,
    at_most,
)

# What Kuma takes as a port's appProtocol (3.0's list; 2.x stores anything).
APP_PROTOCOLS = ("tcp", "http", "http2", "grpc", "kafka")
AppProtocol = Literal["tcp", "http", "http2", "grpc", "kafka"]
_RFC1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
MAX_SERVICE_PORTS = 100


def label_name_problem(value: str) -> str | None:
    """Why ``value`` is not an RFC 1035 label (a service kind's name); None if it is one."""
    if len(value) > MAX_LABEL_LENGTH:
        return f"must be at most {MAX_LABEL_LENGTH} characters (it is one DNS label)"
    if not _RFC1035.fullmatch(value):
        return (
            "must be an RFC 1035 label: lower case letters, digits and '-', starting with a "
            "letter and ending with a letter or digit"
        )
    return None


def _label_name(value: str) -> str:
    problem = label_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


LabelName = Annotated[str, AfterValidator(_label_name)]
Status = dict[str, Any] | None


class DataplaneRef(Model):
    name: ResourceName


class MatchLabels(Model):
    match_labels: Labels | None = Field(None, alias="matchLabels")


class MeshServiceSelector(Model):
    """Which dataplanes serve a MeshService: one of the three ways."""

    dataplane_tags: Tags | None = Field(None, alias="dataplaneTags")
    dataplane_ref: DataplaneRef | None = Field(None, alias="dataplaneRef")
    dataplane_labels: MatchLabels | None = Field(None, alias="dataplaneLabels")

    @model_validator(mode="after")
    def _one(self) -> MeshServiceSelector:
        given = [self.dataplane_tags, self.dataplane_ref, self.dataplane_labels]
        if sum(item is not None for item in given) > 1:
            raise ValueError(
                "must specify only one of: dataplaneTags, dataplaneRef, or dataplaneLabels"
            )
        return self


class MeshServicePort(Model):
    name: Text | None = None
    port: Port
    # An inbound's port (a number), or an inbound's name.
    target_port: StrictInt | Text | None = Field(None, alias="targetPort")
    app_protocol: AppProtocol = Field("tcp", alias="appProtocol")

    @property
    def port_name(self) -> str:
        """Kuma's name of the port: its name, else its number."""
        return self.name or str(self.port)


Ports = Annotated[tuple[MeshServicePort, ...], at_most(MAX_SERVICE_PORTS, "ports")]


class MeshServiceSpec(Model):
    state: Literal["Available", "Unavailable"] | None = None
    selector: MeshServiceSelector | None = None
    ports: Ports = ()
    identities: tuple[dict[str, Any], ...] | None = None


class MeshService(NamedResource):
    """A destination in a mesh: which dataplanes serve it, on which ports."""

    type: Literal["MeshService"] = "MeshService"
    mesh: ResourceName = "default"
    name: LabelName
    spec: MeshServiceSpec = MeshServiceSpec()
    status: Status = Field(None, exclude=True)


class ExternalMatch(Model):
    type: Literal["HostnameGenerator"] = "HostnameGenerator"
    port: Port
    protocol: Literal["tcp", "grpc", "http", "http2"] = "tcp"


_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\.?"
)


class ExternalEndpoint(Model):
    address: Text
    port: Port
    priority: Annotated[int, Field(ge=0, le=128, strict=True)] | None = None

    @field_validator("address")
    @classmethod
    def _ip_or_hostname(cls, address: str) -> str:
        from ipaddress import ip_address

        try:
            ip_address(address)
            return address
        except ValueError:
            pass
        if not _HOSTNAME.fullmatch(address) or len(address) > 253:
            raise ValueError("address has to be a valid IP or hostname")
        return address


class MeshExternalServiceSpec(Model):
    match: ExternalMatch
    endpoints: Annotated[tuple[ExternalEndpoint, ...], at_most(MAX_SELECTORS, "endpoints")] = ()
    tls: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None


class MeshExternalService(NamedResource):
    """A destination outside the mesh, reached through the mesh by a hostname and VIP."""

    type: Literal["MeshExternalService"] = "MeshExternalService"
    mesh: ResourceName = "default"
    name: LabelName
    spec: MeshExternalServiceSpec
    status: Status = Field(None, exclude=True)


class MeshServiceLabels(Model):
    match_labels: Labels = Field(alias="matchLabels")

    @field_validator("match_labels")
    @classmethod
    def _not_empty(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels:
            raise ValueError("cannot be empty")
        return labels


class MultiZoneSelector(Model):
    mesh_service: MeshServiceLabels = Field(alias="meshService")


class MultiZonePort(Model):
    name: Text | None = None
    port: Port
    app_protocol: AppProtocol = Field("tcp", alias="appProtocol")

    @property
    def port_name(self) -> str:
        return self.name or str(self.port)


class MeshMultiZoneServiceSpec(Model):
    selector: MultiZoneSelector
    ports: Annotated[
        tuple[MultiZonePort, ...], Field(min_length=1), at_most(MAX_SERVICE_PORTS, "ports")
    ]


class MeshMultiZoneService(NamedResource):
    """MeshServices of every zone, selected by labels, grouped under one name (global)."""

    type: Literal["MeshMultiZoneService"] = "MeshMultiZoneService"
    mesh: ResourceName = "default"
    name: LabelName
    spec: MeshMultiZoneServiceSpec
    status: Status = Field(None, exclude=True)


class GeneratorSelector(Model):
    """Which resources a HostnameGenerator names: exactly one kind, by labels."""

    mesh_service: MatchLabels | None = Field(None, alias="meshService")
    mesh_external_service: MatchLabels | None = Field(None, alias="meshExternalService")
    mesh_multi_zone_service: MatchLabels | None = Field(None, alias="meshMultiZoneService")

    @model_validator(mode="after")
    def _exactly_one(self) -> GeneratorSelector:
        given = [self.mesh_service, self.mesh_external_service, self.mesh_multi_zone_service]
        if sum(item is not None for item in given) != 1:
            raise ValueError(
                "exactly one selector (meshService, meshExternalService, meshMultiZoneService) "
                "must be defined"
            )
        return self

    @property
    def kind(self) -> str:
        if self.mesh_service is not None:
            return "MeshService"
        if self.mesh_external_service is not None:
            return "MeshExternalService"
        return "MeshMultiZoneService"

    @property
    def match_labels(self) -> dict[str, str]:
        chosen = self.mesh_service or self.mesh_external_service or self.mesh_multi_zone_service
        return dict(chosen.match_labels or {}) if chosen is not None else {}


def _template(template: str) -> str:
    from registry.meshservice.templates import TemplateError, check

    try:
        check(template)
    except TemplateError as error:
        raise ValueError(error.message) from None
    return template


class HostnameGeneratorSpec(Model):
    selector: GeneratorSelector
    template: Annotated[str, AfterValidator(_template)]
    extension: dict[str, Any] | None = None


class HostnameGenerator(NamedResource):
    """How the services a selector picks are named: a template (not per mesh)."""

    type: Literal["HostnameGenerator"] = "HostnameGenerator"
    # Not per mesh; Kuma's documentation writes one with `mesh:`, which is ignored.
    mesh: str | None = Field(None, exclude=True)
    spec: HostnameGeneratorSpec


TargetKind = Literal[
    "Mesh",
    "MeshSubset",
    "MeshGateway",
    "MeshService",
    "MeshExternalService",
    "MeshMultiZoneService",
    "MeshServiceSubset",
    "MeshHTTPRoute",
    "Dataplane",
]


class TargetRef(Model):
    kind: TargetKind
    name: Text | None = None
    tags: Tags | None = None
    mesh: ResourceName | None = None
    proxy_types: tuple[Literal["Sidecar", "Gateway"], ...] | None = Field(None, alias="proxyTypes")
    namespace: Text | None = None
    labels: Labels | None = None
    section_name: Text | None = Field(None, alias="sectionName")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> TargetRef:
        if self.kind == "Mesh" and self.name:
            raise ValueError("using name with kind Mesh is not yet supported")
        if self.kind in ("MeshService", "MeshServiceSubset") and not (self.name or self.labels):
            raise ValueError(f"name or labels must be set when kind is {self.kind}")
        return self


class PermissionDefault(Model):
    action: Literal["Allow", "Deny", "AllowWithShadowDeny"]


class PermissionFrom(Model):
    target_ref: TargetRef = Field(alias="targetRef")
    default: PermissionDefault


class PermissionRule(Model):
    default: dict[str, Any]


class MeshTrafficPermissionSpec(Model):
    target_ref: TargetRef | None = Field(None, alias="targetRef")
    from_: Annotated[tuple[PermissionFrom, ...], at_most(MAX_SELECTORS, "from entries")] | None = (
        Field(None, alias="from")
    )
    rules: Annotated[tuple[PermissionRule, ...], at_most(MAX_SELECTORS, "rules")] | None = None

    @model_validator(mode="after")
    def _from_or_rules(self) -> MeshTrafficPermissionSpec:
        if self.from_ and self.rules:
            raise ValueError("field 'from' must be empty when 'rules' is defined")
        if not self.from_ and not self.rules:
            raise ValueError("at least one of 'from' or 'rules' has to be defined")
        return self


class MeshTrafficPermission(NamedResource):
    """Kuma's MeshTrafficPermission: which clients may reach the targeted proxies."""

    type: Literal["MeshTrafficPermission"] = "MeshTrafficPermission"
    mesh: ResourceName = "default"
    spec: MeshTrafficPermissionSpec
