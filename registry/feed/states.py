"""What the change feed carries: its changes, the state a snapshot needs of each resource,
and the batches a read of the feed returns.

Plain frozen values, shared by the reader that fills them, the view that applies them
and the store that hands them out; this module imports nothing else of the feed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from registry.meshservice.states import (
    NO_LABELS,
    GeneratorState,
    Labels,
    ResourceKey,
    ServiceState,
)
from registry.schema.fields import SERVICE_TAG
from registry.snapshot import IPAddress, Reachable, TrafficRule

ServiceKey = tuple[str, str]  # (mesh, service)
DataplaneKey = tuple[str, str]  # (mesh, dataplane name)


@dataclass(frozen=True, slots=True)
class Change:
    """One change to one resource. ``mesh`` is a Mesh's own name for kind "Mesh"."""

    revision: int
    kind: str
    mesh: str
    name: str
    deleted: bool = False
    # When it was committed, as stored: with the revision, what tells this change from
    # another numbered alike by a database that lost it (see FeedGap).
    committed_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    """A stored row the reader left out: its kind, its key and why."""

    kind: str
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Vip:
    """The virtual IPs of one service."""

    address: IPv4Address
    address6: IPv6Address | None = None


# Kuma's meshServices.mode of a Mesh: whether MeshServices are generated, and whether the
# legacy kuma.io/service names are answered besides them (not when Exclusive).
MESH_SERVICES_DISABLED = "Disabled"
MESH_SERVICES_EXCLUSIVE = "Exclusive"
MESH_SERVICES_MODES = (MESH_SERVICES_DISABLED, "Everywhere", "ReachableBackends", "Exclusive")


@dataclass(frozen=True, slots=True)
class MeshState:
    """What a snapshot needs of one mesh."""

    mtls: bool = False
    mesh_services: str = MESH_SERVICES_DISABLED

    @property
    def legacy_names(self) -> bool:
        return self.mesh_services != MESH_SERVICES_EXCLUSIVE


NO_TAGS: Mapping[str, str] = NO_LABELS


@dataclass(frozen=True, slots=True)
class InboundState:
    service: str
    address: IPAddress
    port: int
    ready: bool
    name: str | None = None  # what a MeshService port's targetPort may name
    # Its other tags (kuma.io/service is ``service``), for MeshService selectors on them.
    # The cold load reads only the tags some selector asks for; RegistryView keeps those.
    tags: Mapping[str, str] = field(default_factory=lambda: NO_TAGS)

    def has_tags(self, tags: Mapping[str, str]) -> bool:
        """Whether this inbound has every one of `tags` (kuma.io/service among them)."""
        for key, value in tags.items():
            if (self.service if key == SERVICE_TAG else self.tags.get(key)) != value:
                return False
        return True


@dataclass(frozen=True, slots=True)
class DataplaneState:
    """What a snapshot needs of one dataplane."""

    mesh: str
    name: str
    address: IPAddress
    advertised: IPAddress | None
    inbounds: tuple[InboundState, ...]
    # False once an agent-connected dataplane has missed its heartbeats.
    online: bool = True
    zone: str | None = None  # the zone it was replicated from; None: this registry's own
    # Its labels; the cold load reads them only when some selector asks for labels.
    labels: Labels = field(default_factory=lambda: NO_LABELS)
    reachable: Reachable | None = None

    @property
    def services(self) -> set[str]:
        return {inbound.service for inbound in self.inbounds}

    @property
    def addresses(self) -> tuple[IPAddress, ...]:
        """Its distinct addresses; most inbounds share the dataplane's own, and hashing an
        address (ipaddress hashes its hex string) is what a large load spends most on."""
        others = [inbound.address for inbound in self.inbounds if inbound.address != self.address]
        return (self.address, *dict.fromkeys(others)) if others else (self.address,)


@dataclass(frozen=True, slots=True)
class IngressState:
    """What a snapshot needs of a zone ingress: where it is and what it offers."""

    name: str
    zone: str | None
    address: IPAddress  # the advertised address, else its own
    port: int  # the advertised port, else its own
    services: frozenset[ServiceKey]


@dataclass(frozen=True, slots=True)
class EgressState:
    name: str
    zone: str | None
    address: IPAddress
    port: int


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """Changes and the state they left, read together at one point in time.

    ``revision`` is the last change's revision (or the registry's, for a full read).
    In the state maps, None means the resource is gone. The state may already include
    later changes than ``revision``; applying those again when they come is harmless.
    ``vips`` covers the services the changed dataplanes serve and the changed ingresses
    offer now (a full read: every VIP in use).
    """

    revision: int
    changes: tuple[Change, ...]
    meshes: dict[str, MeshState | None]
    dataplanes: dict[DataplaneKey, DataplaneState | None]
    vips: dict[ServiceKey, Vip | None]
    ingresses: dict[str, IngressState | None] = field(default_factory=dict)
    egresses: dict[str, EgressState | None] = field(default_factory=dict)
    permissions: dict[tuple[str, str], TrafficRule | None] = field(default_factory=dict)
    # Kuma's service model: MeshServices and their kin by (kind, mesh, name), their VIPs
    # (those of the changed ones; a full read: all), and HostnameGenerators by name.
    services: dict[ResourceKey, ServiceState | None] = field(default_factory=dict)
    service_vips: dict[ResourceKey, IPv4Address | None] = field(default_factory=dict)
    generators: dict[str, GeneratorState | None] = field(default_factory=dict)
    # Rows left out because they could not be read (each taken as gone).
    unreadable: tuple[UnreadableRow, ...] = ()
    # The commit time of the change at ``revision`` (None: not known, e.g. compacted):
    # a reader hands it back with its next read, which checks it is still that change.
    mark: datetime | None = None
