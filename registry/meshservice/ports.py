"""Where each port of a destination is served: the dataplanes a MeshService selects,
another zone's ingresses, the MeshServices a MeshMultiZoneService groups, or a
MeshExternalService's own endpoints."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import ip_address

from registry.feed.states import DataplaneState, EgressState, IngressState
from registry.meshservice.states import (
    ExternalServiceState,
    MeshServiceState,
    MultiZoneServiceState,
)
from registry.snapshot import Destination, DestinationPort, Endpoint, IPAddress


def zone_gateways(
    ingresses: Iterable[IngressState], egresses: Iterable[EgressState], local_zone: str | None
) -> dict[str, tuple[Endpoint, ...]]:
    """Where a client here reaches each other zone: that zone's ingresses (each at its
    advertised address and port), or this zone's egresses when it has any, as for the
    legacy names of other zones. Each endpoint carries the zone it reaches."""
    own_egresses = sorted(
        (egress for egress in egresses if egress.zone in (None, local_zone)),
        key=lambda egress: egress.name,
    )
    by_zone: dict[str, dict[tuple[IPAddress, int], Endpoint]] = {}
    for ingress in sorted(ingresses, key=lambda ingress: ingress.name):
        zone = ingress.zone
        if zone is None or zone == local_zone:
            continue
        endpoints = by_zone.setdefault(zone, {})
        hops = [(e.name, e.address, e.port) for e in own_egresses] or [
            (ingress.name, ingress.address, ingress.port)
        ]
        for name, address, port in hops:
            endpoints.setdefault(
                (address, port), Endpoint(dataplane=name, address=address, port=port, zone=zone)
            )
    return {zone: tuple(endpoints.values()) for zone, endpoints in by_zone.items()}


def mesh_service_ports(
    state: MeshServiceState,
    selected: Sequence[DataplaneState],
    gateways: tuple[Endpoint, ...] | None,
) -> tuple[DestinationPort, ...]:
    """A MeshService's ports, each served by the inbounds it targets of the `selected`
    dataplanes; one of another zone (`gateways`: where that zone is reached) whose
    dataplanes are not here, by that zone's gateways on every port."""
    if gateways is not None and not selected:
        return tuple(
            DestinationPort(
                name=port.name, port=port.port, app_protocol=port.app_protocol, endpoints=gateways
            )
            for port in state.ports
        )
    ports = []
    for port in state.ports:
        target = port.port if port.target_port is None else port.target_port
        by_name = isinstance(target, str)
        endpoints = [
            Endpoint(
                dataplane=dataplane.name,
                address=dataplane.advertised or inbound.address,
                port=inbound.port,
                ready=inbound.ready,
                zone=dataplane.zone,
                online=dataplane.online,
            )
            for dataplane in selected
            for inbound in dataplane.inbounds
            if (inbound.name if by_name else inbound.port) == target
        ]
        ports.append(
            DestinationPort(
                name=port.name,
                port=port.port,
                app_protocol=port.app_protocol,
                endpoints=tuple(endpoints),
            )
        )
    return tuple(ports)


def multizone_ports(
    state: MultiZoneServiceState, grouped: Iterable[Destination]
) -> tuple[DestinationPort, ...]:
    """Each port's endpoints: those of the same port (by name, else number) of every
    MeshService `grouped`, this zone's first; each endpoint once (another zone's
    MeshServices share its ingresses)."""
    ordered = sorted(
        grouped, key=lambda destination: (destination.zone is not None, destination.name)
    )
    ports = []
    for port in state.ports:
        endpoints: dict[Endpoint, None] = {}
        for destination in ordered:
            match = port_called(destination.ports, port.name) or port_called(
                destination.ports, str(port.port)
            )
            endpoints.update(dict.fromkeys(match.endpoints if match is not None else ()))
        ports.append(
            DestinationPort(
                name=port.name,
                port=port.port,
                app_protocol=port.app_protocol,
                endpoints=tuple(endpoints),
            )
        )
    return tuple(ports)


def port_called(ports: Iterable[DestinationPort], name: str) -> DestinationPort | None:
    """Kuma's FindPortByName: the port with that name, or that number."""
    return next((port for port in ports if name in (port.name, str(port.port))), None)


def external_port(state: ExternalServiceState) -> DestinationPort:
    """A MeshExternalService's one port: its endpoints given by address, its hosts by name."""
    endpoints: list[Endpoint] = []
    hosts: list[tuple[str, int]] = []
    for address, port in state.endpoints:
        try:
            endpoints.append(Endpoint(dataplane=state.name, address=ip_address(address), port=port))
        except ValueError:
            hosts.append((address.rstrip(".").lower(), port))
    return DestinationPort(
        name=str(state.port),
        port=state.port,
        app_protocol=state.protocol,
        endpoints=tuple(endpoints),
        hosts=tuple(hosts),
    )
