"""Which addresses each kind of VIP may take: legacy services' from ``--vip-cidr``, and
MeshServices, MeshExternalServices and MeshMultiZoneServices each from a range of its own,
which the legacy allocator never hands out even where ``--vip-cidr`` contains it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address

from registry.errors import Cause
from registry.models import LEGACY_VIP_KIND

# An inclusive range of IPv4 addresses, as integers.
Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class VipSettings:
    """The ranges VIPs are allocated from (None: no IPv6 VIPs), and how long a released
    VIP rests before it is handed out again."""

    cidr: IPv4Network
    cidr6: IPv6Network | None
    quarantine_seconds: float
    # Kuma's ranges (ipam.meshService.cidr and its kin).
    mesh_service_cidr: IPv4Network
    mesh_external_service_cidr: IPv4Network
    mesh_multizone_service_cidr: IPv4Network

    def kind_ranges(self) -> dict[str, IPv4Network]:
        """The range of each resource kind that holds a VIP, by its type name."""
        return {
            "MeshService": self.mesh_service_cidr,
            "MeshExternalService": self.mesh_external_service_cidr,
            "MeshMultiZoneService": self.mesh_multizone_service_cidr,
        }

    def network(self, kind: str) -> IPv4Network:
        """The range VIPs of `kind` come from (LEGACY_VIP_KIND: --vip-cidr)."""
        return self.cidr if kind == LEGACY_VIP_KIND else self.kind_ranges()[kind]

    def spans(self, kind: str) -> tuple[Span, ...]:
        """The addresses VIPs of `kind` may take, lowest first: its range's usable
        addresses, and for legacy VIPs those outside every kind's range."""
        first, last = usable_range(self.network(kind))
        if kind != LEGACY_VIP_KIND:
            return ((first, last),)
        spans = [(first, last)]
        for network in self.kind_ranges().values():
            low, high = int(network.network_address), int(network.broadcast_address)
            spans = [piece for span in spans for piece in _without(span, low, high)]
        return tuple(spans)


def _without(span: Span, low: int, high: int) -> list[Span]:
    """`span` less the addresses low..high."""
    first, last = span
    if high < first or low > last:
        return [span]
    pieces = []
    if first < low:
        pieces.append((first, low - 1))
    if high < last:
        pieces.append((high + 1, last))
    return pieces


def usable_range(network: IPv4Network | IPv6Network) -> tuple[int, int]:
    """The first and last allocatable address of `network`, as integers.

    The network address is skipped (and an IPv4 broadcast address), except in the
    tiny networks where every address is a host.
    """
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.num_addresses > 2:
        first += 1
        if network.version == 4:
            last -= 1
    return first, last


def vip_range_causes(settings: VipSettings, addresses: Iterable[tuple[str, str]]) -> list[Cause]:
    """A cause for each (field, address) inside this registry's VIP ranges: an address
    there would answer as a workload and as a service at once (PTR included)."""
    causes = []
    for field_name, text in addresses:
        address = ip_address(text)
        ranges: list[tuple[str, IPv4Network | IPv6Network]]
        if address.version == 4:
            ranges = [("--vip-cidr", settings.cidr)]
            ranges += [(_OPTIONS[kind], net) for kind, net in settings.kind_ranges().items()]
        else:
            ranges = [("--vip6-cidr", settings.cidr6)] if settings.cidr6 is not None else []
        for option, network in ranges:
            if address in network:
                causes.append(
                    Cause(
                        field_name,
                        f"{text!r} is inside the virtual IP range {network} ({option}): "
                        "no workload can be there",
                    )
                )
                break
    return causes


# The option that sets each kind's range, for messages.
_OPTIONS = {
    LEGACY_VIP_KIND: "--vip-cidr",
    "MeshService": "--mesh-service-cidr",
    "MeshExternalService": "--mesh-external-service-cidr",
    "MeshMultiZoneService": "--mesh-multizone-service-cidr",
}


def range_option(kind: str) -> str:
    """The option that sets the range of VIPs of `kind`."""
    return _OPTIONS[kind]
