"""Virtual IP allocation: one stable VIP per (kind, mesh, service), unique across meshes.

A VIP's kind says what it names: a legacy service (LEGACY_VIP_KIND, a kuma.io/service
value) or a resource of a service kind (its type name; ``service`` is the resource's
name). Each kind takes addresses from its own range (registry/store/vip_ranges.py); only
legacy services get IPv6 VIPs.

The database is the arbiter. The unique constraints on ``vips`` (address, address6,
(kind, mesh, service)) make a duplicate impossible; an allocator that loses a race gets
an IntegrityError inside a SAVEPOINT, which leaves the surrounding write transaction
usable (on Postgres an error outside a savepoint aborts the whole transaction), and
simply looks again. Candidates come from the index: the highest allocated address
plus one, then a never-used gap, then the longest-expired quarantined address.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from sqlalchemy import ColumnElement, exists, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from registry.errors import Conflict, VipPoolExhausted
from registry.feed.states import Vip
from registry.models import (
    LEGACY_VIP_KIND,
    DataplaneRow,
    InboundRow,
    IngressServiceRow,
    MeshRow,
    VipRow,
)
from registry.store.vip_ranges import (
    Span,
    VipSettings,
    range_option,
    usable_range,
    vip_range_causes,
)

# Each retry follows another allocator's commit, so this bounds contention, not work.
MAX_ATTEMPTS = 100


class _LostRace(Exception):
    """Another allocator changed the row between our read and our write."""


def encode6(address: IPv6Address) -> str:
    """The stored form of an IPv6 VIP: fixed width, so text order is numeric order."""
    return address.exploded


def _vip(address: int, address6: str | None) -> Vip:
    return Vip(IPv4Address(address), IPv6Address(address6) if address6 is not None else None)


def _wants6(kind: str, settings: VipSettings) -> bool:
    return kind == LEGACY_VIP_KIND and settings.cidr6 is not None


async def allocate_vip(
    connection: AsyncConnection,
    mesh: str,
    service: str,
    settings: VipSettings,
    now: datetime,
    kind: str = LEGACY_VIP_KIND,
) -> Vip:
    """Give (kind, mesh, service) its VIP, within the caller's transaction; the same one
    it had when it still holds a row (active or quarantined)."""
    row = await _current(connection, kind, mesh, service)
    if (
        row is not None
        and row.released_at is None
        and (not _wants6(kind, settings) or row.address6)
    ):
        return _vip(row.address, row.address6)
    for _ in range(MAX_ATTEMPTS):
        try:
            async with connection.begin_nested():
                return await _allocate_once(connection, kind, mesh, service, settings, now)
        except (IntegrityError, _LostRace):
            continue  # another allocator committed first; look again
    what = "service" if kind == LEGACY_VIP_KIND else kind
    raise Conflict(
        f"could not allocate a VIP for {what} {service!r} in mesh {mesh!r}: "
        f"{MAX_ATTEMPTS} attempts lost races with other allocators; try again"
    )


async def release_vips(
    connection: AsyncConnection,
    mesh: str,
    services: Collection[str] | None,
    now: datetime,
) -> None:
    """Put into quarantine the legacy VIPs of `services` in `mesh` (all when None) that
    no dataplane serves and no ingress offers any more."""
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
            VipRow.kind == LEGACY_VIP_KIND,
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


async def release_resource_vips(
    connection: AsyncConnection,
    mesh: str,
    now: datetime,
    kind: str | None = None,
    name: str | None = None,
) -> None:
    """Put into quarantine the VIP of the resource `kind` `name` in `mesh`; without them,
    the VIPs of every resource of a service kind in `mesh` (the mesh is gone)."""
    statement = (
        update(VipRow)
        .where(VipRow.kind != LEGACY_VIP_KIND, VipRow.mesh == mesh, VipRow.released_at.is_(None))
        .values(released_at=now)
    )
    if kind is not None:
        statement = statement.where(VipRow.kind == kind)
    if name is not None:
        statement = statement.where(VipRow.service == name)
    await connection.execute(statement)


async def _current(connection: AsyncConnection, kind: str, mesh: str, service: str) -> Any:
    result = await connection.execute(
        select(VipRow.id, VipRow.address, VipRow.address6, VipRow.released_at).where(
            VipRow.kind == kind, VipRow.mesh == mesh, VipRow.service == service
        )
    )
    return result.one_or_none()


async def _allocate_once(
    connection: AsyncConnection,
    kind: str,
    mesh: str,
    service: str,
    settings: VipSettings,
    now: datetime,
) -> Vip:
    row = await _current(connection, kind, mesh, service)
    if row is not None:
        return await _reactivate(connection, row, kind, mesh, service, settings, now)
    address = await _free_address(connection, settings.spans(kind))
    if address is not None:
        address6 = (
            await _pick_address6(connection, settings, now) if _wants6(kind, settings) else None
        )
        await _insert(connection, (kind, mesh, service), address, address6, now, released=False)
        return _vip(address, address6)
    return await _reuse_quarantined(connection, kind, mesh, service, settings, now)


async def _insert(
    connection: AsyncConnection,
    owner: tuple[str, str, str],
    address: int,
    address6: str | None,
    now: datetime,
    *,
    released: bool,
) -> None:
    """A VIP row for (kind, mesh, service): in use, or `released` (quarantined)."""
    kind, mesh, service = owner
    await connection.execute(
        insert(VipRow).values(
            address=address,
            address6=address6,
            kind=kind,
            mesh=mesh,
            service=service,
            allocated_at=now,
            released_at=now if released else None,
        )
    )


async def _reactivate(
    connection: AsyncConnection,
    row: Any,
    kind: str,
    mesh: str,
    service: str,
    settings: VipSettings,
    now: datetime,
) -> Vip:
    """Bring back (kind, mesh, service)'s own VIP, and add an IPv6 one if it lacks it."""
    values: dict[str, Any] = {}
    if row.released_at is not None:
        values.update(released_at=None, allocated_at=now)
    address6 = row.address6
    if _wants6(kind, settings) and address6 is None:
        address6 = values["address6"] = await _pick_address6(connection, settings, now)
    if values:
        # Matching on (kind, mesh, service) too: if another took the row over in the
        # meantime, this updates nothing and we start again.
        result = await connection.execute(
            update(VipRow)
            .where(
                VipRow.id == row.id,
                VipRow.kind == kind,
                VipRow.mesh == mesh,
                VipRow.service == service,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise _LostRace
    return _vip(row.address, address6)


async def _free_address(connection: AsyncConnection, spans: tuple[Span, ...]) -> int | None:
    """A never-allocated IPv4 address of `spans` (lowest span first), or None when every
    one has been used."""
    for first, last in spans:
        address = await _free_in(connection, first, last)
        if address is not None:
            return address
    return None


async def _free_in(connection: AsyncConnection, first: int, last: int) -> int | None:
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
    connection: AsyncConnection,
    kind: str,
    mesh: str,
    service: str,
    settings: VipSettings,
    now: datetime,
) -> Vip:
    """Hand the longest-expired quarantined address of the kind's range to it."""
    spans = settings.spans(kind)
    row = await _oldest_expired(connection, _within(VipRow.address, spans), settings, now)
    if row is None:
        raise VipPoolExhausted(
            f"no virtual IP is free in {settings.network(kind)}: every address is in use or "
            f"in quarantine (for {settings.quarantine_seconds:g}s after its "
            f"{'service' if kind == LEGACY_VIP_KIND else kind} went); widen "
            f"{range_option(kind)}"
        )
    address6 = row.address6
    if not _wants6(kind, settings):
        address6 = None
    elif address6 is None or settings.cidr6 is None or IPv6Address(address6) not in settings.cidr6:
        address6 = await _pick_address6(connection, settings, now)
    # The released_at match makes this a compare-and-set: a competing taker updates
    # nothing and starts again.
    result = await connection.execute(
        update(VipRow)
        .where(VipRow.id == row.id, VipRow.released_at == row.released_at)
        .values(
            kind=kind,
            mesh=mesh,
            service=service,
            address6=address6,
            allocated_at=now,
            released_at=None,
        )
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
    row = await _oldest_expired(connection, VipRow.address6.between(first, last), settings, now)
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


def _within(column: Any, spans: tuple[Span, ...]) -> ColumnElement[bool]:
    return or_(false(), *(column.between(first, last) for first, last in spans))


async def _oldest_expired(
    connection: AsyncConnection,
    where: ColumnElement[bool],
    settings: VipSettings,
    now: datetime,
) -> Any:
    """The row matching `where` whose quarantine ended longest ago; or None."""
    cutoff = now - timedelta(seconds=settings.quarantine_seconds)
    return (
        await connection.execute(
            select(VipRow.id, VipRow.address, VipRow.address6, VipRow.released_at)
            .where(where, VipRow.released_at.is_not(None), VipRow.released_at <= cutoff)
            .order_by(VipRow.released_at, VipRow.id)
            .limit(1)
        )
    ).one_or_none()


__all__ = [
    "MAX_ATTEMPTS",
    "VipSettings",
    "allocate_vip",
    "encode6",
    "release_resource_vips",
    "release_vips",
    "usable_range",
    "vip_range_causes",
]


async def reserve_vip(
    connection: AsyncConnection,
    kind: str,
    mesh: str,
    service: str,
    vip: Vip,
    settings: VipSettings,
    now: datetime,
) -> bool:
    """Record `vip` as the one (kind, mesh, service) comes back to (a restore of an
    export): a released row, which the service takes back when next served (as after any
    release) and which the quarantine keeps from every other service meanwhile. Nothing
    is recorded when the service already has a row, or the address is outside the kind's
    range or held by another row; whether it was."""
    address = int(vip.address)
    if not any(first <= address <= last for first, last in settings.spans(kind)):
        return False
    if vip.address6 is not None and (
        not _wants6(kind, settings) or settings.cidr6 is None or vip.address6 not in settings.cidr6
    ):
        vip = Vip(vip.address)
    taken = [VipRow.address == address]
    if vip.address6 is not None:
        taken.append(VipRow.address6 == encode6(vip.address6))
    if await connection.scalar(select(VipRow.id).where(or_(*taken)).limit(1)) is not None:
        return False
    if await _current(connection, kind, mesh, service) is not None:
        return False
    try:
        async with connection.begin_nested():
            address6 = encode6(vip.address6) if vip.address6 is not None else None
            await _insert(connection, (kind, mesh, service), address, address6, now, released=True)
    except IntegrityError:
        return False  # another writer took the address or the service in the meantime
    return True
