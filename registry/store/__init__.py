"""The registry store: resources in SQL, returned as plain frozen values."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    case,
    delete,
    distinct,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from registry.errors import Cause, InvalidResource, NotFound, RegistryError
from registry.feed.changes import (
    FEED_BATCH,
    FeedBatch,
    OldServices,
    PendingChange,
    read_all,
    read_batch,
    record_changes,
)
from registry.feed.reader import active_vips, read_revision
from registry.feed.view import RegistryView
from registry.models import (
    DataplaneInsightRow,
    DataplaneRow,
    InboundRow,
    InboundTagRow,
    IngressServiceRow,
    MeshRow,
    RegistryStateRow,
    TrafficPermissionRow,
    ZoneEgressRow,
    ZoneIngressRow,
    ZoneRow,
)
from registry.schema import (
    ZONE_TAG,
    Dataplane,
    Mesh,
    Resource,
    TrafficPermission,
    Zone,
    ZoneEgress,
    ZoneIngress,
    answered_addresses,
)
from registry.snapshot import Snapshot
from registry.store import bulk
from registry.store.bulk import Replica
from registry.store.database import WRITE_OPTION, map_errors, schema_missing
from registry.store.vips import VipSettings, allocate_vip, release_vips, vip_range_causes
from registry.write_rules import GLOBAL, MODES, STANDALONE, Origin, check_write


@dataclass(frozen=True, slots=True)
class Stored:
    """A resource as stored, with Kuma's creation and modification times."""

    resource: Resource
    creation_time: datetime
    modification_time: datetime


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing: the items and the total count matching the filter."""

    total: int
    items: tuple[Stored, ...]


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """A service of a mesh as `GET /meshes/{mesh}/services` shows it."""

    name: str
    vip: IPv4Address | None
    vip6: IPv6Address | None
    endpoints: int  # ready inbounds of the service
    dataplanes: int
    # Endpoints by the zone of their dataplane (None: this registry's own).
    zones: Mapping[str | None, int] = field(default_factory=dict)


class Transaction:
    """An open write transaction and the changes it made, for the change feed.

    Every change is checked against the control plane's write rules as it is recorded
    (registry/write_rules.py): a write its mode does not take rolls the whole
    transaction back with a 405, whichever path made it.
    """

    def __init__(
        self,
        connection: AsyncConnection,
        now: datetime,
        mode: str = STANDALONE,
        origin: Origin = Origin.LOCAL,
    ) -> None:
        self.connection = connection
        self.now = now
        self.mode = mode
        self.origin = origin
        self.changes: list[PendingChange] = []

    def record(self, kind: str, mesh: str, name: str, *, deleted: bool = False) -> None:
        check_write(self.mode, kind, self.origin)
        self.changes.append(PendingChange(kind, mesh, name, deleted))


class _Unchanged(RegistryError):
    """Raised inside a write transaction to roll it back (revision bump included)."""


ANY_VALUE = "*"  # a tag filter value meaning "the tag is present, whatever its value"


# The resources kept whole as JSON, by type: their table, and whether mesh-scoped.
OtherResource = ZoneIngress | ZoneEgress | TrafficPermission | Zone
_TABLES: dict[str, Any] = {
    "ZoneIngress": ZoneIngressRow,
    "ZoneEgress": ZoneEgressRow,
    "TrafficPermission": TrafficPermissionRow,
    "Zone": ZoneRow,
}
_MODELS: dict[str, type[OtherResource]] = {
    "ZoneIngress": ZoneIngress,
    "ZoneEgress": ZoneEgress,
    "TrafficPermission": TrafficPermission,
    "Zone": Zone,
}
NO_MESH = ""  # the change feed's mesh of a resource that belongs to no mesh


def feed_mesh(resource: Resource) -> str:
    """The mesh a change to `resource` is recorded under."""
    if isinstance(resource, Mesh):
        return resource.name
    return getattr(resource, "mesh", NO_MESH)


class Store:
    """Reads and writes the registry; every write is one transaction.

    `mode` is the control plane's (standalone, zone or global): what it may write.
    A global control plane serves no dataplanes: there dataplanes and ingresses take no
    VIPs (`allocate_vips` says otherwise where given).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        vips: VipSettings | None = None,
        *,
        mode: str = STANDALONE,
        allocate_vips: bool | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        self.engine = engine
        self.vips = vips or VipSettings()
        self.mode = mode
        self.allocate_vips = mode != GLOBAL if allocate_vips is None else allocate_vips
        self._writer = engine.execution_options(**{WRITE_OPTION: True})

    # -- transactions -------------------------------------------------------------------

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """One consistent read: all its statements see the same committed state."""
        with map_errors(self.engine.url):
            async with self.engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    # Read committed would give each statement its own snapshot.
                    await connection.execution_options(isolation_level="REPEATABLE READ")
                async with connection.begin():
                    yield connection

    @asynccontextmanager
    async def writing(self, origin: Origin = Origin.LOCAL) -> AsyncIterator[Transaction]:
        """A write transaction; the changes it records enter the change feed at commit.

        `origin` says who writes: the sync worker's replication takes other resources than
        this control plane's own callers (registry/write_rules.py)."""
        with map_errors(self.engine.url):
            async with self._writer.begin() as connection:
                # First statement of every write: on Postgres it takes the registry_state
                # row lock until commit, so writers run one at a time and number their
                # changes in commit order (registry/feed/changes.py explains why the feed needs
                # that). It also makes "is this the service's last dataplane?" a question
                # two writers cannot answer at once. SQLite's BEGIN IMMEDIATE
                # (WRITE_OPTION) serialises writers the same way.
                first_revision = await connection.scalar(
                    update(RegistryStateRow)
                    .where(RegistryStateRow.id == 1)
                    .values(revision=RegistryStateRow.revision + 1)
                    .returning(RegistryStateRow.revision)
                )
                if first_revision is None:
                    raise schema_missing(self.engine.url)
                transaction = Transaction(connection, _now(), self.mode, origin)
                yield transaction
                await record_changes(
                    connection, first_revision, transaction.changes, transaction.now
                )

    # -- writes -------------------------------------------------------------------------

    async def put(self, resource: Resource) -> bool:
        """Create or replace one resource; True when it was created."""
        return (await self.put_many([resource]))[0]

    async def put_many(self, resources: Sequence[Resource]) -> list[bool]:
        """Create or replace all of them in one transaction, or none; True where created."""
        # Meshes first, so a batch may hold a mesh and its dataplanes in any order.
        order = sorted(range(len(resources)), key=lambda i: not isinstance(resources[i], Mesh))
        created = [False] * len(resources)
        async with self.writing() as transaction:
            for index in order:
                created[index] = await self.put_in(transaction, resources[index])
        return created

    async def put_in(self, transaction: Transaction, resource: Resource) -> bool:
        """Create or replace `resource` in an open write transaction; True when created."""
        connection, now = transaction.connection, transaction.now
        if isinstance(resource, Mesh):
            created = await self._put_mesh(connection, resource, now)
        elif isinstance(resource, Dataplane):
            created = await self._put_dataplane(connection, resource, now)
        else:
            created = await self._put_other(connection, resource, now)
        transaction.record(resource.type, feed_mesh(resource), resource.name)
        return created

    async def put_dataplanes(self, transaction: Transaction, replicas: Sequence[Replica]) -> None:
        """Create or replace many dataplanes in a few bulk statements (their meshes exist)."""
        vips = self.vips if self.allocate_vips else None
        await bulk.put_dataplanes(transaction.connection, replicas, transaction.now, vips)
        for replica in replicas:
            transaction.record("Dataplane", replica.dataplane.mesh, replica.dataplane.name)

    async def delete_dataplanes(
        self, transaction: Transaction, keys: Collection[tuple[str, str]]
    ) -> None:
        """Delete those of the dataplanes (mesh, name) that exist."""
        vips = self.vips if self.allocate_vips else None
        for mesh, name in await bulk.delete_dataplanes(
            transaction.connection, keys, transaction.now, vips
        ):
            transaction.record("Dataplane", mesh, name, deleted=True)

    async def touch_zone(self, name: str, now: datetime) -> None:
        """Note the sync worker's contact for zone `name`, creating its Zone if new.

        The contact is no feed change: written often, it bumps no revision.
        """
        with map_errors(self.engine.url):
            async with self._writer.begin() as connection:
                result = await connection.execute(
                    update(ZoneRow).where(ZoneRow.name == name).values(last_seen=now)
                )
        if result.rowcount:
            return
        async with self.writing(Origin.REPLICATION) as transaction:
            exists_now = await transaction.connection.scalar(
                select(ZoneRow.id).where(ZoneRow.name == name)
            )
            if exists_now is None:
                await self.put_in(transaction, Zone.model_validate({"name": name}))
            await transaction.connection.execute(
                update(ZoneRow).where(ZoneRow.name == name).values(last_seen=now)
            )

    async def delete_in(self, transaction: Transaction, kind: str, mesh: str, name: str) -> bool:
        """Delete a resource in an open write transaction; False when there was none."""
        if kind == "Mesh":
            return await self._delete_mesh(transaction, name)
        if kind == "Dataplane":
            return await self._delete_dataplane(transaction, mesh, name)
        return await self._delete_other(transaction, kind, mesh, name)

    def check_addresses(self, resource: Resource, where: str = "") -> None:
        """Refuse (400) a resource answered at an address inside this registry's VIP ranges
        (the schema refuses the default range, class E; these may be configured elsewhere)."""
        causes = vip_range_causes(self.vips, answered_addresses(resource))
        if causes:
            raise InvalidResource(
                f"{resource.type} is not valid",
                [Cause(f"{where}{cause.field}", cause.message) for cause in causes],
            )

    async def _mesh_id(self, connection: AsyncConnection, mesh: str, what: str) -> int:
        mesh_id = await connection.scalar(select(MeshRow.id).where(MeshRow.name == mesh))
        if mesh_id is None:
            raise NotFound(f'mesh "{mesh}" does not exist: create it before {what}')
        return int(mesh_id)

    async def _put_other(
        self, connection: AsyncConnection, resource: OtherResource, now: datetime
    ) -> bool:
        """Create or replace a resource kept whole as JSON (ingress, egress, permission, zone)."""
        self.check_addresses(resource)
        table = _TABLES[resource.type]
        where = [table.name == resource.name]
        values: dict[str, Any] = {"spec": resource.dump(), "modified_at": now}
        if isinstance(resource, TrafficPermission):
            mesh_id = await self._mesh_id(
                connection, resource.mesh, f'traffic permission "{resource.name}"'
            )
            where.append(table.mesh_id == mesh_id)
            values["mesh_id"] = mesh_id
        elif isinstance(resource, Zone):
            values["enabled"] = resource.enabled
        else:
            values["zone"] = resource.zone
        row_id = await connection.scalar(select(table.id).where(*where))
        created = row_id is None
        if row_id is None:
            inserted = await connection.execute(
                insert(table)
                .values(name=resource.name, created_at=now, **values)
                .returning(table.id)
            )
            row_id = inserted.scalar_one()
        else:
            await connection.execute(update(table).where(table.id == row_id).values(**values))
        if isinstance(resource, ZoneIngress):
            await self._put_ingress_services(connection, row_id, resource, now)
        return created

    async def _put_ingress_services(
        self, connection: AsyncConnection, ingress_id: int, ingress: ZoneIngress, now: datetime
    ) -> None:
        """The services an ingress offers, and the VIPs this zone gives them."""
        old = {
            (mesh, service)
            for mesh, service in await connection.execute(
                select(IngressServiceRow.mesh, IngressServiceRow.service).where(
                    IngressServiceRow.ingress_id == ingress_id
                )
            )
        }
        await connection.execute(
            delete(IngressServiceRow).where(IngressServiceRow.ingress_id == ingress_id)
        )
        offered: dict[tuple[str, str], int] = {}
        for available in ingress.available_services:
            key = (available.mesh, available.service)
            offered[key] = offered.get(key, 0) + available.instances
        if offered:
            await connection.execute(
                insert(IngressServiceRow),
                [
                    {"ingress_id": ingress_id, "mesh": m, "service": s, "instances": n}
                    for (m, s), n in offered.items()
                ],
            )
        if self.allocate_vips:
            for mesh, service in sorted(offered.keys() - old):
                await allocate_vip(connection, mesh, service, self.vips, now)
        for mesh, service in sorted(old - offered.keys()):
            await release_vips(connection, mesh, {service}, now)

    async def _put_mesh(self, connection: AsyncConnection, mesh: Mesh, now: datetime) -> bool:
        mesh_id = await connection.scalar(select(MeshRow.id).where(MeshRow.name == mesh.name))
        if mesh_id is None:
            await connection.execute(
                insert(MeshRow).values(
                    name=mesh.name, spec=mesh.dump(), created_at=now, modified_at=now
                )
            )
            return True
        await connection.execute(
            update(MeshRow).where(MeshRow.id == mesh_id).values(spec=mesh.dump(), modified_at=now)
        )
        return False

    async def _put_dataplane(
        self, connection: AsyncConnection, dataplane: Dataplane, now: datetime
    ) -> bool:
        self.check_addresses(dataplane)
        mesh_id = await connection.scalar(select(MeshRow.id).where(MeshRow.name == dataplane.mesh))
        if mesh_id is None:
            raise NotFound(
                f'mesh "{dataplane.mesh}" does not exist: create it before dataplane '
                f'"{dataplane.name}"'
            )
        values = {
            "address": dataplane.networking.address,
            "advertised_address": dataplane.networking.advertised_address,
            "zone": (dataplane.labels or {}).get(ZONE_TAG),
            "spec": dataplane.dump(),
            "modified_at": now,
        }
        dataplane_id = await connection.scalar(
            select(DataplaneRow.id).where(
                DataplaneRow.mesh_id == mesh_id, DataplaneRow.name == dataplane.name
            )
        )
        old_services: set[str] = set()
        created = dataplane_id is None
        if dataplane_id is None:
            inserted = await connection.execute(
                insert(DataplaneRow)
                .values(mesh_id=mesh_id, name=dataplane.name, created_at=now, **values)
                .returning(DataplaneRow.id)
            )
            dataplane_id = inserted.scalar_one()
        else:
            old_services = set(
                await connection.scalars(
                    select(InboundRow.service).where(InboundRow.dataplane_id == dataplane_id)
                )
            )
            await connection.execute(
                update(DataplaneRow).where(DataplaneRow.id == dataplane_id).values(**values)
            )
            # Their tags go with them (ON DELETE CASCADE).
            await connection.execute(
                delete(InboundRow).where(InboundRow.dataplane_id == dataplane_id)
            )
        await _insert_inbounds(connection, dataplane_id, dataplane)
        if self.allocate_vips:
            for service in dataplane.services:
                await allocate_vip(connection, dataplane.mesh, service, self.vips, now)
        await release_vips(connection, dataplane.mesh, old_services - set(dataplane.services), now)
        return created

    async def delete_mesh(self, name: str) -> None:
        """Delete a mesh and, like Kuma, its dataplanes; their VIPs go into quarantine."""
        async with self.writing() as transaction:
            if not await self._delete_mesh(transaction, name):
                raise NotFound(f'mesh "{name}" not found')

    async def delete_dataplane(self, mesh: str, name: str) -> None:
        async with self.writing() as transaction:
            if not await self._delete_dataplane(transaction, mesh, name):
                raise NotFound(f'dataplane "{name}" not found in mesh "{mesh}"')

    async def delete_resource(self, kind: str, mesh: str, name: str) -> None:
        """Delete an ingress, egress, traffic permission (in `mesh`) or zone."""
        async with self.writing() as transaction:
            if not await self._delete_other(transaction, kind, mesh, name):
                raise NotFound(_missing(kind, mesh, name))

    async def _delete_mesh(self, transaction: Transaction, name: str) -> bool:
        connection = transaction.connection
        mesh_id = await connection.scalar(select(MeshRow.id).where(MeshRow.name == name))
        if mesh_id is None:
            return False
        # The database cascades; the feed gets a tombstone for each of its resources too.
        for kind, table in (
            ("Dataplane", DataplaneRow),
            ("TrafficPermission", TrafficPermissionRow),
        ):
            for member in await connection.scalars(
                select(table.name).where(table.mesh_id == mesh_id)
            ):
                transaction.record(kind, name, member, deleted=True)
        await connection.execute(delete(MeshRow).where(MeshRow.id == mesh_id))
        await release_vips(connection, name, None, transaction.now)
        transaction.record("Mesh", name, name, deleted=True)
        return True

    async def _delete_dataplane(self, transaction: Transaction, mesh: str, name: str) -> bool:
        connection = transaction.connection
        dataplane_id = await connection.scalar(
            select(DataplaneRow.id)
            .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
            .where(MeshRow.name == mesh, DataplaneRow.name == name)
        )
        if dataplane_id is None:
            return False
        services = set(
            await connection.scalars(
                select(InboundRow.service).where(InboundRow.dataplane_id == dataplane_id)
            )
        )
        await connection.execute(delete(DataplaneRow).where(DataplaneRow.id == dataplane_id))
        await release_vips(connection, mesh, services, transaction.now)
        transaction.record("Dataplane", mesh, name, deleted=True)
        return True

    async def _delete_other(
        self, transaction: Transaction, kind: str, mesh: str, name: str
    ) -> bool:
        table = _TABLES[kind]
        connection = transaction.connection
        where = [table.name == name]
        if kind == "TrafficPermission":
            where.append(table.mesh_id.in_(select(MeshRow.id).where(MeshRow.name == mesh)))
        row_id = await connection.scalar(select(table.id).where(*where))
        if row_id is None:
            return False
        offered: list[tuple[str, str]] = []
        if kind == "ZoneIngress":
            offered = [
                (mesh, service)
                for mesh, service in await connection.execute(
                    select(IngressServiceRow.mesh, IngressServiceRow.service).where(
                        IngressServiceRow.ingress_id == row_id
                    )
                )
            ]
        await connection.execute(delete(table).where(table.id == row_id))
        for offered_mesh, service in offered:
            await release_vips(connection, offered_mesh, {service}, transaction.now)
        transaction.record(
            kind, mesh if kind == "TrafficPermission" else NO_MESH, name, deleted=True
        )
        return True

    async def ensure_mesh(self, name: str) -> bool:
        """Create mesh `name` when no mesh exists at all (Kuma's default mesh); True if created."""
        async with self.reading() as connection:
            if await connection.scalar(select(exists(select(MeshRow.id)))):
                return False
        try:
            async with self.writing() as transaction:
                connection = transaction.connection
                # Checked again under the write lock: another replica may have just made one.
                if await connection.scalar(select(exists(select(MeshRow.id)))):
                    raise _Unchanged
                await self._put_mesh(
                    connection, Mesh.model_validate({"name": name}), transaction.now
                )
                transaction.record("Mesh", name, name)
        except _Unchanged:
            return False
        return True

    # -- reads --------------------------------------------------------------------------

    async def get_mesh(self, name: str) -> Stored:
        async with self.reading() as connection:
            row = (
                await connection.execute(
                    select(MeshRow.spec, MeshRow.created_at, MeshRow.modified_at).where(
                        MeshRow.name == name
                    )
                )
            ).one_or_none()
        if row is None:
            raise NotFound(f'mesh "{name}" not found')
        return _stored(Mesh, row)

    async def list_meshes(self, size: int = 100, offset: int = 0) -> Page:
        query = select(MeshRow.name, MeshRow.spec, MeshRow.created_at, MeshRow.modified_at)
        async with self.reading() as connection:
            return await _page(connection, Mesh, query, MeshRow.name, size, offset)

    async def get_dataplane(self, mesh: str, name: str) -> Stored:
        async with self.reading() as connection:
            row = (
                await connection.execute(
                    select(DataplaneRow.spec, DataplaneRow.created_at, DataplaneRow.modified_at)
                    .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
                    .where(MeshRow.name == mesh, DataplaneRow.name == name)
                )
            ).one_or_none()
        if row is None:
            raise NotFound(f'dataplane "{name}" not found in mesh "{mesh}"')
        return _stored(Dataplane, row)

    async def list_dataplanes(
        self, mesh: str, size: int = 100, offset: int = 0, tags: Mapping[str, str] | None = None
    ) -> Page:
        """A page of a mesh's dataplanes by name; with `tags`, those with an inbound that has
        every one of them (value "*" matches any value). An unknown mesh lists nothing."""
        query = (
            select(
                DataplaneRow.name,
                DataplaneRow.spec,
                DataplaneRow.created_at,
                DataplaneRow.modified_at,
            )
            .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
            .where(MeshRow.name == mesh)
        )
        if tags:
            query = query.where(_has_inbound_tagged(tags))
        async with self.reading() as connection:
            return await _page(connection, Dataplane, query, DataplaneRow.name, size, offset)

    async def get_resource(self, kind: str, mesh: str, name: str) -> Stored:
        """An ingress, egress, traffic permission (in `mesh`) or zone."""
        table = _TABLES[kind]
        query = select(table.spec, table.created_at, table.modified_at).where(table.name == name)
        if kind == "TrafficPermission":
            query = query.join(MeshRow, MeshRow.id == table.mesh_id).where(MeshRow.name == mesh)
        async with self.reading() as connection:
            row = (await connection.execute(query)).one_or_none()
        if row is None:
            raise NotFound(_missing(kind, mesh, name))
        return _stored(_MODELS[kind], row)

    async def list_resources(
        self, kind: str, mesh: str | None = None, size: int = 100, offset: int = 0
    ) -> Page:
        table = _TABLES[kind]
        query = select(table.name, table.spec, table.created_at, table.modified_at)
        if kind == "TrafficPermission":
            query = query.join(MeshRow, MeshRow.id == table.mesh_id).where(MeshRow.name == mesh)
        async with self.reading() as connection:
            return await _page(connection, _MODELS[kind], query, table.name, size, offset)

    async def zone_contacts(self) -> dict[str, datetime | None]:
        """Each zone's last contact from its sync worker."""
        async with self.reading() as connection:
            rows = await connection.execute(select(ZoneRow.name, ZoneRow.last_seen))
            return {name: last_seen for name, last_seen in rows}

    async def list_services(self, mesh: str) -> list[ServiceSummary]:
        """The services of a mesh by name, with VIPs and counts. An unknown mesh has none."""
        counts = (
            select(
                InboundRow.service,
                DataplaneRow.zone,
                func.count(distinct(InboundRow.dataplane_id)),
                # Endpoints: ready inbounds of dataplanes not offline (as DNS counts them).
                func.sum(
                    case((InboundRow.ready & DataplaneInsightRow.online.is_not(False), 1), else_=0)
                ),
            )
            .join(DataplaneRow, DataplaneRow.id == InboundRow.dataplane_id)
            .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
            .outerjoin(DataplaneInsightRow, DataplaneInsightRow.dataplane_id == DataplaneRow.id)
            .where(MeshRow.name == mesh)
            .group_by(InboundRow.service, DataplaneRow.zone)
        )
        async with self.reading() as connection:
            rows = (await connection.execute(counts)).all()
            vips = await active_vips(connection, mesh)
        # A dataplane is in one zone: the per-zone counts add up.
        by_service: dict[str, tuple[int, dict[str | None, int]]] = {}
        for service, zone, dataplanes, ready in rows:
            total, zones = by_service.get(service, (0, {}))
            zones[zone] = int(ready or 0)
            by_service[service] = (total + int(dataplanes), zones)
        summaries = []
        for service, (dataplanes, zones) in by_service.items():
            vip, vip6 = vips.get((mesh, service), (None, None))
            summaries.append(
                ServiceSummary(
                    name=service,
                    vip=vip,
                    vip6=vip6,
                    endpoints=sum(zones.values()),
                    dataplanes=dataplanes,
                    zones=zones,
                )
            )
        return sorted(summaries, key=lambda summary: summary.name)

    async def revision(self) -> int:
        async with self.reading() as connection:
            return await read_revision(connection)

    async def load_snapshot(self) -> Snapshot:
        """The whole registry, read in one transaction, as an immutable Snapshot."""
        view = RegistryView()
        state = await self.read_all()
        view.apply_batch(state)
        return view.snapshot

    async def read_all(self) -> FeedBatch:
        """Everything a snapshot needs, at one revision: where a reader starts."""
        async with self.reading() as connection:
            return await read_all(connection)

    async def read_feed(
        self, after: int, old_services: OldServices, limit: int = FEED_BATCH
    ) -> FeedBatch | None:
        """The next changes after revision `after` and the current state of what they touch;
        None when there are none."""
        async with self.reading() as connection:
            return await read_batch(connection, after, old_services, limit)


def _now() -> datetime:
    return datetime.now(UTC)


def _missing(kind: str, mesh: str, name: str) -> str:
    where = f' in mesh "{mesh}"' if kind == "TrafficPermission" else ""
    return f'{kind} "{name}" not found{where}'


def _stored(model: type[Resource], row: Any) -> Stored:
    return Stored(
        resource=model.model_validate(row.spec),
        creation_time=row.created_at,
        modification_time=row.modified_at,
    )


def _by_name(connection: AsyncConnection, column: Any) -> ColumnElement[Any]:
    # Byte order on both databases: Postgres would otherwise sort by its locale.
    return column.collate("C") if connection.dialect.name == "postgresql" else column


async def _page(
    connection: AsyncConnection,
    model: type[Resource],
    query: Select[Any],
    name: Any,
    size: int,
    offset: int,
) -> Page:
    total = await connection.scalar(select(func.count()).select_from(query.subquery()))
    rows = await connection.execute(
        query.order_by(_by_name(connection, name)).limit(size).offset(offset)
    )
    return Page(total=int(total or 0), items=tuple(_stored(model, row) for row in rows))


def _has_inbound_tagged(tags: Mapping[str, str]) -> ColumnElement[bool]:
    inbound = aliased(InboundRow)
    conditions: list[ColumnElement[bool]] = [inbound.dataplane_id == DataplaneRow.id]
    for key, value in tags.items():
        tag = aliased(InboundTagRow)
        matches = [tag.inbound_id == inbound.id, tag.key == key]
        if value != ANY_VALUE:
            matches.append(tag.value == value)
        conditions.append(exists().where(*matches))
    return exists().where(*conditions)


async def _insert_inbounds(
    connection: AsyncConnection, dataplane_id: int, dataplane: Dataplane
) -> None:
    inbounds = dataplane.networking.inbound
    if not inbounds:
        return
    rows = [
        {
            "dataplane_id": dataplane_id,
            "position": position,
            "service": inbound.service,
            "address": inbound.address or dataplane.networking.address,
            "port": inbound.port,
            "ready": inbound.ready,
        }
        for position, inbound in enumerate(inbounds)
    ]
    ids = (
        await connection.execute(
            insert(InboundRow).returning(InboundRow.id, sort_by_parameter_order=True), rows
        )
    ).scalars()
    tags = [
        {"inbound_id": inbound_id, "key": key, "value": value}
        for inbound_id, inbound in zip(ids, inbounds, strict=True)
        for key, value in inbound.tags.items()
    ]
    await connection.execute(insert(InboundTagRow), tags)


__all__ = ["Dataplane", "Mesh", "Page", "ServiceSummary", "Store", "Stored", "VipSettings"]
