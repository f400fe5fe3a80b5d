"""Virtual IP allocation: one stable VIP per (mesh, service), unique across meshes.

The database is the arbiter. The unique constraints on ``vips`` (address, address6,
(mesh, service)) make a duplicate impossible; an allocator that loses a race gets an
IntegrityError inside a SAVEPOINT, which leaves the surrounding write transaction
usable (on Postgres an error outside a savepoint aborts the whole transaction), and
simply looks again. Candidates come from the index: the highest allocated address
plus one, then a never-used gap, then the longest-expired quarantined address.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from registry.errors import Cause, Conflict, VipPoolExhausted
from registry.feed.states import Vip
from registry.models import DataplaneRow, InboundRow, IngressServiceRow, MeshRow, VipRow

# Each retry follows another allocator's commit, so this bounds contention, not work.
MAX_ATTEMPTS = 100


@dataclass(frozen=True, slots=True)
class VipSettings:
    cidr: IPv4Network = IPv4Network("240.0.0.0/4")
    cidr6: IPv6Network | None = None
    quarantine_seconds: float = 3600.0


def vip_range_causes(settings: VipSettings, addresses: Iterable[tuple[str, str]]) -> list[Cause]:
    """A cause for each (field, address) inside this registry's VIP ranges: an address
    there would answer as a workload and as a service at once (PTR included)."""
    causes = []
    for field_name, text in addresses:
        address = ip_address(text)
        network = settings.cidr if address.version == 4 else settings.cidr6
        if network is not None and address in network:
            causes.append(
                Cause(
                    field_name,
                    f"{text!r} is inside the virtual IP range {network} (--vip-cidr"
                    f"{'' if address.version == 4 else '6'}): no workload can be there",
                )
            )
    return causes


class _LostRace(Exception):
    """Another allocator changed the row between our read and our write."""


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


def encode6(address: IPv6Address) -> str:
    """The stored form of an IPv6 VIP: fixed width, so text order is numeric order."""
    return address.exploded


def _vip(address: int, address6: str | None) -> Vip:
    return Vip(IPv4Address(address), IPv6Address(address6) if address6 is not None else None)


async def allocate_vip(
    connection: AsyncConnection, mesh: str, service: str, settings: VipSettings, now: datetime
) -> Vip:
    """Give (mesh, service) its VIP, within the caller's transaction; the same one it had
    when it still holds a row (active or quarantined)."""
    row = await _current(connection, mesh, service)
    if row is not None and row.released_at is None and (settings.cidr6 is None or row.address6):
        return _vip(row.address, row.address6)
    for _ in range(MAX_ATTEMPTS):
        try:
            async with connection.begin_nested():
                return await _allocate_once(connection, mesh, service, settings, now)
        except (IntegrityError, _LostRace):
            continue  # another allocator committed first; look again
    raise Conflict(
        f"could not allocate a VIP for service {service!r} in mesh {mesh!r}: "
        f"{MAX_ATTEMPTS} attempts lost races with other allocators; try again"
    )


async def release_vips(
    connection: AsyncConnection,
    mesh: str,
    services: Collection[str] | None,
    now: datetime,
) -> None:
    """Put into quarantine the VIPs of `services` in `mesh` (all when None) that no
    dataplane serves and no ingress offers any more."""
    still_served = (
        select(InboundRow.id)
        .join(DataplaneRow, DataplaneRow.id == InboundRow.dataplane_id)
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .where(MeshRow.name == VipRow.mesh, InboundRow.service == VipRow.service)
    )
    # A service another zone's ingress offers keeps its VIP here too (DESIGN, "VIPs").
    still_offered = select(IngressServiceRow.ingress_id).where(
        IngressServiceRow.mesh == VipRow.mesh, IngressServiceRow.service == VipRow.service
    )
    statement = (
        update(VipRow)
        .where(
            VipRow.mesh == mesh,
            VipRow.released_at.is_(None),
            ~exists(still_served),
            ~exists(still_offered),
        )
        .values(released_at=now)
    )
    if services is not None:
        if not services:
            return
        statement = statement.where(VipRow.service.in_(sorted(services)))
    await connection.execute(statement)


async def _current(connection: AsyncConnection, mesh: str, service: str) -> Any:
    result = await connection.execute(
        select(VipRow.id, VipRow.address, VipRow.address6, VipRow.released_at).where(
            VipRow.mesh == mesh, VipRow.service == service
        )
    )
    return result.one_or_none()


async def _allocate_once(
    connection: AsyncConnection, mesh: str, service: str, settings: VipSettings, now: datetime
) -> Vip:
    row = await _current(connection, mesh, service)
    if row is not None:
        return await _reactivate(connection, row, mesh, service, settings, now)
    address = await _free_address(connection, settings.cidr)
    if address is not None:
        address6 = await _pick_address6(connection, settings, now)
        await connection.execute(
            insert(VipRow).values(
                address=address,
                address6=address6,
                mesh=mesh,
                service=service,
                allocated_at=now,
                released_at=None,
            )
        )
        return _vip(address, address6)
    return await _reuse_quarantined(connection, mesh, service, settings, now)


async def _reactivate(
    connection: AsyncConnection,
    row: Any,
    mesh: str,
    service: str,
    settings: VipSettings,
    now: datetime,
) -> Vip:
    """Bring back (mesh, service)'s own VIP, and add an IPv6 one if it lacks it."""
    values: dict[str, Any] = {}
    if row.released_at is not None:
        values.update(released_at=None, allocated_at=now)
    address6 = row.address6
    if settings.cidr6 is not None and address6 is None:
        address6 = values["address6"] = await _pick_address6(connection, settings, now)
    if values:
        # Matching on (mesh, service) too: if another service took the row over in the
        # meantime, this updates nothing and we start again.
        result = await connection.execute(
            update(VipRow)
            .where(VipRow.id == row.id, VipRow.mesh == mesh, VipRow.service == service)
            .values(**values)
        )
        if result.rowcount != 1:
            raise _LostRace
    return _vip(row.address, address6)


async def _free_address(connection: AsyncConnection, network: IPv4Network) -> int | None:
    """A never-allocated IPv4 address of `network`, or None when every one has been used."""
    first, last = usable_range(network)
    in_range = VipRow.address.between(first, last)
    lowest, highest = (
        await connection.execute(
            select(func.min(VipRow.address), func.max(VipRow.address)).where(in_range)
        )
    ).one()
    if highest is None or lowest > first:
        return first
    if highest < last:
        return int(highest) + 1
    # The top is taken; look for a hole (left by a changed --vip-cidr, say). This scans
    # the range's rows, which only happens once the range has been used up to its end.
    following = aliased(VipRow)
    gap = await connection.scalar(
        select(func.min(VipRow.address + 1)).where(
            VipRow.address.between(first, last - 1),
            ~exists().where(following.address == VipRow.address + 1),
        )
    )
    return int(gap) if gap is not None else None


async def _reuse_quarantined(
    connection: AsyncConnection, mesh: str, service: str, settings: VipSettings, now: datetime
) -> Vip:
    """Hand the longest-expired quarantined address of the range to (mesh, service)."""
    first, last = usable_range(settings.cidr)
    row = await _oldest_expired(connection, VipRow.address, first, last, settings, now)
    if row is None:
        raise VipPoolExhausted(
            f"no virtual IP is free in {settings.cidr}: every address is in use or in "
            f"quarantine (for {settings.quarantine_seconds:g}s after its service went); "
            "widen --vip-cidr"
        )
    address6 = row.address6
    if settings.cidr6 is None:
        address6 = None
    elif address6 is None or IPv6Address(address6) not in settings.cidr6:
        address6 = await _pick_address6(connection, settings, now)
    # The released_at match makes this a compare-and-set: a competing taker updates
    # nothing and starts again.
    result = await connection.execute(
        update(VipRow)
        .where(VipRow.id == row.id, VipRow.released_at == row.released_at)
        .values(mesh=mesh, service=service, address6=address6, allocated_at=now, released_at=None)
    )
    if result.rowcount != 1:
        raise _LostRace
    return _vip(row.address, address6)


async def _pick_address6(
    connection: AsyncConnection, settings: VipSettings, now: datetime
) -> str | None:
    """A free IPv6 VIP in the stored form, or None when no IPv6 range is configured."""
    network = settings.cidr6
    if network is None:
        return None
    first, last = (encode6(IPv6Address(value)) for value in usable_range(network))
    highest = await connection.scalar(
        select(func.max(VipRow.address6)).where(VipRow.address6.between(first, last))
    )
    if highest is None:
        return first
    if highest < last:
        return encode6(IPv6Address(highest) + 1)
    # Used up to its end (only a tiny range can be): take an expired quarantined one.
    row = await _oldest_expired(connection, VipRow.address6, first, last, settings, now)
    if row is None:
        raise VipPoolExhausted(
            f"no IPv6 virtual IP is free in {network}: every address is in use or in "
            "quarantine; widen --vip6-cidr"
        )
    result = await connection.execute(
        update(VipRow)
        .where(VipRow.id == row.id, VipRow.address6 == row.address6)
        .values(address6=None)
    )
    if result.rowcount != 1:
        raise _LostRace
    return str(row.address6)


async def _oldest_expired(
    connection: AsyncConnection,
    column: Any,
    first: Any,
    last: Any,
    settings: VipSettings,
    now: datetime,
) -> Any:
    """The row whose quarantine ended longest ago with `column` in [first, last]; or None."""
    cutoff = now - timedelta(seconds=settings.quarantine_seconds)
    return (
        await connection.execute(
            select(VipRow.id, VipRow.address, VipRow.address6, VipRow.released_at)
            .where(
                column.between(first, last),
                VipRow.released_at.is_not(None),
                VipRow.released_at <= cutoff,
            )
            .order_by(VipRow.released_at, VipRow.id)
            .limit(1)
        )
    ).one_or_none()
