"""What one client sees of its mesh beyond or short of the mesh's own tables, as a
hashable key (:class:`Seen`), and the tables made from it (its *variant*).

A mesh's own tables (its base) are what a client sees whose dataplanes narrow nothing
and whom no permission lets see another zone's services: this zone's legacy names and
this zone's destinations (none of them in a ReachableBackends mesh). Any other client
is answered what registry.snapshot's rule says it sees (docs/dns.md, "Who sees which
names"): :func:`seen_by` asks the rule and writes the answer down as a :class:`Seen`;
clients with equal ones get equal answers and share one variant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from dnsserver.config import ZoneConfig
from dnsserver.destinations import EMPTY_DESTINATIONS, DestinationTables, apply_destinations
from dnsserver.records import Name
from dnsserver.tables import MeshTables, apply_services
from registry.snapshot import Client, Destination, MeshView, ServiceView

# The ports of a destination a client sees, by their index among its ports; None: all.
PortChoice = tuple[int, ...] | None
SeenDestinations = frozenset[tuple[str, PortChoice]]  # (destination key, ports)


@dataclass(frozen=True, slots=True)
class Seen:
    """What a client sees of its mesh, where it differs from the mesh's own tables.

    ``services``: this zone's services whose legacy names it sees (None: all);
    ``remote``: other zones' services it sees by their legacy names; ``destinations``:
    this zone's destinations it sees (None: those of the base); ``foreign``: other
    zones' destinations it sees.
    """

    services: frozenset[str] | None = None
    remote: frozenset[str] = frozenset()
    destinations: SeenDestinations | None = None
    foreign: SeenDestinations = frozenset()


BASE = Seen()  # a client that sees what the mesh's own tables hold


def seen_by(view: MeshView, client: Client, foreign: Iterable[Destination]) -> Seen:
    """What ``client`` sees of ``view`` (``foreign``: its destinations of other zones)."""
    reach = client.reach
    services = None
    if view.legacy_names and reach is not None and reach.services is not None:
        services = frozenset(
            name
            for name in reach.services
            if name in view.services and view.sees_service(client, name)
        )
    remote: frozenset[str] = frozenset()
    if view.mtls and view.remote:
        remote = frozenset(name for name in view.remote if view.sees_remote(client, name))
    destinations = None
    if not view.sees_destinations_unnarrowed(client):
        # Narrowed: only what its reachableBackends refs name, if it lists any.
        listed = reach is not None and reach.backends
        local = (d for d in view.destinations.values() if d.zone is None)
        destinations = _seen(view, client, local) if listed else frozenset()
    seen_foreign = _seen(view, client, foreign) if view.mtls else frozenset()
    return Seen(services, remote, destinations, seen_foreign)


def in_base(view: MeshView, destination: Destination | None) -> Destination | None:
    """``destination`` as the mesh's own tables hold it; None when they do not."""
    if destination is None or destination.zone is not None:
        return None
    return view.seen_destination(Client(view.name), destination)


def base_destinations(
    config: ZoneConfig, origins: frozenset[Name], view: MeshView
) -> DestinationTables:
    """The destination tables of ``view``'s own tables (see :func:`in_base`)."""
    return apply_destinations(
        config,
        origins,
        EMPTY_DESTINATIONS,
        (
            (key, seen)
            for key, destination in sorted(view.destinations.items())
            if (seen := in_base(view, destination)) is not None
        ),
    )


def variant_tables(
    config: ZoneConfig,
    origins: frozenset[Name],
    view: MeshView,
    seen: Seen,
    base: tuple[MeshTables, DestinationTables],
    empty: MeshTables,
) -> tuple[MeshTables, DestinationTables]:
    """The legacy and destination tables a client that sees ``seen`` is answered from,
    made from the mesh's own (``base``) and, where it sees fewer, from nothing."""
    tables, destinations = base
    if seen.services is not None:
        changes = [(name, view.services[name]) for name in sorted(seen.services)]
        tables = apply_services(config, empty, changes)
    if seen.remote:
        crossing = [
            (name, _cross_zone_view(view.services.get(name), view.remote[name]))
            for name in sorted(seen.remote)
        ]
        tables = apply_services(config, tables, crossing, cross_zone=True)
    if seen.destinations is not None:
        destinations = apply_destinations(
            config, origins, EMPTY_DESTINATIONS, _destinations(view, seen.destinations)
        )
    if seen.foreign:
        destinations = apply_destinations(
            config, origins, destinations, _destinations(view, seen.foreign)
        )
    return tables, destinations


def _seen(view: MeshView, client: Client, destinations: Iterable[Destination]) -> SeenDestinations:
    found: set[tuple[str, PortChoice]] = set()
    for destination in destinations:
        seen = view.seen_destination(client, destination)
        if seen is None:
            continue
        if seen is destination:
            found.add((destination.key, None))
        else:
            ports = tuple(
                index
                for index, port in enumerate(destination.ports)
                if any(port is kept for kept in seen.ports)
            )
            found.add((destination.key, ports))
    return frozenset(found)


def _destinations(view: MeshView, seen: SeenDestinations) -> Iterator[tuple[str, Destination]]:
    """The destinations of ``seen``, in key order, each with the ports seen."""
    for key, ports in sorted(seen, key=lambda item: item[0]):
        destination = view.destinations[key]
        if ports is not None:
            destination = replace(destination, ports=tuple(destination.ports[i] for i in ports))
        yield key, destination


def _cross_zone_view(local: ServiceView | None, remote: ServiceView) -> ServiceView:
    """A service as a client that may reach it in other zones sees it: one VIP, the
    endpoints of every zone."""
    if local is None:
        return remote
    return ServiceView(
        name=local.name,
        vip=local.vip or remote.vip,
        vip6=local.vip6 or remote.vip6,
        endpoints=local.endpoints + remote.endpoints,
    )
