"""What the registry's view needs of Kuma's service model: MeshServices, their kin and
HostnameGenerators, as plain frozen values read from their stored documents.

Shared by the feed's reader that fills them and the view that applies them; this module
imports nothing of either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from registry.meshservice.templates import Template

MESH_SERVICE = "MeshService"
MESH_EXTERNAL_SERVICE = "MeshExternalService"
MESH_MULTIZONE_SERVICE = "MeshMultiZoneService"
HOSTNAME_GENERATOR = "HostnameGenerator"
# The kinds a destination (and a VIP of its own, and hostnames) can be of, in the order
# Kuma's hostname generator takes them.
SERVICE_KINDS = (MESH_EXTERNAL_SERVICE, MESH_SERVICE, MESH_MULTIZONE_SERVICE)

# Labels of Kuma's that mean something here.
DISPLAY_NAME_LABEL = "kuma.io/display-name"
NAMESPACE_LABEL = "k8s.kuma.io/namespace"
ZONE_LABEL = "kuma.io/zone"
ORIGIN_LABEL = "kuma.io/origin"
MESH_LABEL = "kuma.io/mesh"
ENV_LABEL = "kuma.io/env"
MANAGED_BY_LABEL = "kuma.io/managed-by"
GRACE_PERIOD_LABEL = "kuma.io/deletion-grace-period-started-at"
ORIGIN_ZONE = "zone"
MANAGED_BY_GENERATOR = "meshservice-generator"
DEFAULT_ZONE = "default"  # a control plane's zone when it is given none (Kuma's)

ResourceKey = tuple[str, str, str]  # (kind, mesh, name)
Labels = Mapping[str, str]
NO_LABELS: Labels = MappingProxyType({})


def frozen_labels(labels: Mapping[str, str] | None) -> Labels:
    return MappingProxyType(dict(labels)) if labels else NO_LABELS


def matches(match_labels: Labels, labels: Labels) -> bool:
    """Whether ``labels`` has every pair of ``match_labels`` (none: everything matches)."""
    return all(labels.get(key) == value for key, value in match_labels.items())


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A port of a MeshService or MeshMultiZoneService (the latter has no target)."""

    name: str  # its name, else its number: Kuma's name of a port
    port: int
    app_protocol: str = "tcp"
    target_port: int | str | None = None

    def called(self, name: str) -> bool:
        """Kuma's FindPortByName: whether `name` is this port's name or number."""
        return name in (self.name, str(self.port))


@dataclass(frozen=True, slots=True)
class Selector:
    """Which dataplanes a MeshService selects: by inbound tags, by name or by labels.

    A MeshService with no selector selects no dataplane.
    """

    tags: Labels | None = None
    dataplane: str | None = None
    labels: Labels | None = None


@dataclass(frozen=True, slots=True)
class MeshServiceState:
    mesh: str
    name: str
    labels: Labels
    created_at: datetime
    selector: Selector
    ports: tuple[ServicePort, ...]
    kind: str = MESH_SERVICE


@dataclass(frozen=True, slots=True)
class ExternalServiceState:
    mesh: str
    name: str
    labels: Labels
    created_at: datetime
    port: int  # spec.match.port: the port clients connect to
    protocol: str
    endpoints: tuple[tuple[str, int], ...]  # (IP address or hostname, port)
    kind: str = MESH_EXTERNAL_SERVICE


@dataclass(frozen=True, slots=True)
class MultiZoneServiceState:
    mesh: str
    name: str
    labels: Labels
    created_at: datetime
    match_labels: Labels  # which MeshServices of its mesh it groups
    ports: tuple[ServicePort, ...]
    kind: str = MESH_MULTIZONE_SERVICE


ServiceState = MeshServiceState | ExternalServiceState | MultiZoneServiceState


@dataclass(frozen=True, slots=True)
class GeneratorState:
    """A HostnameGenerator: which resources of which kind it names, and how."""

    name: str
    labels: Labels
    created_at: datetime
    kind: str  # the kind its selector picks
    match_labels: Labels
    template: Template

    @property
    def origin_zone(self) -> bool:
        return self.labels.get(ORIGIN_LABEL) == ORIGIN_ZONE


def service_key(state: ServiceState) -> ResourceKey:
    return (state.kind, state.mesh, state.name)
