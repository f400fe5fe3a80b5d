"""The registry store: resources in SQL, returned as plain frozen values.

:class:`Store` is the one object callers hold; each of its methods is one transaction,
or one step of a transaction the caller opened with :meth:`Store.writing`. The work is in
its modules: transactions, writes (with their VIP side effects), listing, summaries.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from registry.errors import Cause, InvalidResource, NotFound
from registry.feed.reader import FEED_BATCH, read_all, read_batch, read_revision
from registry.feed.states import FeedBatch, Vip
from registry.feed.view import RegistryView
from registry.models import MeshRow, ZoneRow
from registry.schema import Mesh, Resource, Zone, answered_addresses
from registry.schema.vips import VirtualIPs
from registry.snapshot import Snapshot
from registry.store import listing, summaries, transactions, writes
from registry.store.bulk import Replica
from registry.store.database import WRITE_OPTION, map_errors
from registry.store.defaults import put_absent_generators
from registry.store.kept_whole import missing
from registry.store.listing import Page, Stored
from registry.store.summaries import ServiceSummary
from registry.store.transactions import Transaction, Unchanged
from registry.store.vips import VipSettings, reserve_vip, vip_range_causes
from registry.write_rules import GLOBAL, MODES, STANDALONE, Origin


class Store:
    """Reads and writes the registry; every write is one transaction.

    `mode` is the control plane's (standalone, zone or global): what it may write.
    A global control plane serves no dataplanes: there dataplanes and ingresses take no
    VIPs (`allocate_vips` says otherwise where given).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        vips: VipSettings,
        *,
        mode: str = STANDALONE,
        allocate_vips: bool | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        self.engine = engine
        self.vips = vips
        self.mode = mode
        self.allocate_vips = mode != GLOBAL if allocate_vips is None else allocate_vips
        self._writer = engine.execution_options(**{WRITE_OPTION: True})

    @property
    def _allocating(self) -> VipSettings | None:
        """The VIP settings writes allocate from; None where this store allocates none."""
        return self.vips if self.allocate_vips else None

    # -- transactions -------------------------------------------------------------------

    def reading(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """One consistent read: all its statements see the same committed state."""
        return transactions.reading(self.engine)

    def writing(self, origin: Origin = Origin.LOCAL) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction; the changes it records enter the change feed at commit,
        after which ``transaction.revision`` is the registry's revision.

        `origin` says who writes: the sync worker's replication takes other resources than
        this control plane's own callers (registry/write_rules.py)."""
        return transactions.writing(self._writer, self.mode, origin)

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
        self.check_addresses(resource)
        return await writes.put_resource(transaction, resource, self._allocating)

    async def put_dataplanes(self, transaction: Transaction, replicas: Sequence[Replica]) -> None:
        """Create or replace many dataplanes in a few bulk statements (their meshes exist)."""
        await writes.put_replicas(transaction, replicas, self._allocating)

    async def delete_dataplanes(
        self, transaction: Transaction, keys: Collection[tuple[str, str]]
    ) -> None:
        """Delete those of the dataplanes (mesh, name) that exist."""
        await writes.delete_replicas(transaction, keys, self._allocating)

    async def delete_in(self, transaction: Transaction, kind: str, mesh: str, name: str) -> bool:
        """Delete a resource in an open write transaction; False when there was none."""
        return await writes.delete_resource(transaction, kind, mesh, name)

    async def delete_mesh(self, name: str) -> None:
        """Delete a mesh and, like Kuma, everything in it; their VIPs go into quarantine."""
        async with self.writing() as transaction:
            if not await self.delete_in(transaction, "Mesh", name, name):
                raise NotFound(f'mesh "{name}" not found')

    async def delete_dataplane(self, mesh: str, name: str) -> None:
        async with self.writing() as transaction:
            if not await self.delete_in(transaction, "Dataplane", mesh, name):
                raise NotFound(f'dataplane "{name}" not found in mesh "{mesh}"')

    async def delete_resource(self, kind: str, mesh: str, name: str) -> None:
        """Delete a resource kept whole (a mesh-scoped one in `mesh`): an ingress, egress,
        zone, traffic permission, or one of Kuma's service model."""
        async with self.writing() as transaction:
            if not await self.delete_in(transaction, kind, mesh, name):
                raise NotFound(missing(kind, mesh, name))

    async def ensure_mesh(self, name: str) -> bool:
        """Create mesh `name` when no mesh exists at all (Kuma's default mesh); True if created."""
        async with self.reading() as connection:
            if await connection.scalar(select(exists(select(MeshRow.id)))):
                return False
        try:
            async with self.writing() as transaction:
                # Checked again under the write lock: another replica may have just made one.
                if await transaction.connection.scalar(select(exists(select(MeshRow.id)))):
                    raise Unchanged
                await self.put_in(transaction, Mesh.model_validate({"name": name}))
        except Unchanged:
            return False
        return True

    async def ensure_hostname_generators(self) -> list[str]:
        """Create those of Kuma's default HostnameGenerators for this control plane's mode
        that are absent (registry/store/defaults.py); the names created."""
        try:
            async with self.writing() as transaction:
                return await put_absent_generators(transaction, self.mode)
        except Unchanged:
            return []

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

    async def reserve_vips(self, transaction: Transaction, recorded: VirtualIPs) -> int:
        """Record an export's VIPs of a mesh for its services to take back (see
        `reserve_vip`); how many were recorded. None where this store allocates no VIPs."""
        settings = self._allocating
        if settings is None:
            return 0
        kept = 0
        for vip in recorded.vips:
            kept += await reserve_vip(
                transaction.connection,
                vip.kind,
                recorded.mesh,
                vip.service,
                Vip(vip.ip, vip.ip6),
                settings,
                transaction.now,
            )
        return kept

    def check_addresses(self, resource: Resource, where: str = "") -> None:
        """Refuse (400) a resource answered at an address inside this registry's VIP ranges
        (the schema refuses the default range, class E; these may be configured elsewhere)."""
        causes = vip_range_causes(self.vips, answered_addresses(resource))
        if causes:
            raise InvalidResource(
                f"{resource.type} is not valid",
                [Cause(f"{where}{cause.field}", cause.message) for cause in causes],
            )

    # -- reads --------------------------------------------------------------------------

    async def get_mesh(self, name: str) -> Stored:
        async with self.reading() as connection:
            return await listing.get_mesh(connection, name)

    async def list_meshes(self, size: int = 100, offset: int = 0) -> Page:
        async with self.reading() as connection:
            return await listing.list_meshes(connection, size, offset)

    async def get_dataplane(self, mesh: str, name: str) -> Stored:
        async with self.reading() as connection:
            return await listing.get_dataplane(connection, mesh, name)

    async def list_dataplanes(
        self, mesh: str, size: int = 100, offset: int = 0, tags: Mapping[str, str] | None = None
    ) -> Page:
        """A page of a mesh's dataplanes by name; with `tags`, those with an inbound that has
        every one of them (value "*" matches any value). An unknown mesh lists nothing."""
        async with self.reading() as connection:
            return await listing.list_dataplanes(connection, mesh, size, offset, tags)

    async def get_resource(self, kind: str, mesh: str, name: str) -> Stored:
        """A resource kept whole (a mesh-scoped one in `mesh`)."""
        async with self.reading() as connection:
            return await listing.get_resource(connection, kind, mesh, name)

    async def list_resources(
        self, kind: str, mesh: str | None = None, size: int = 100, offset: int = 0
    ) -> Page:
        """A page of the resources of `kind` by name; of a mesh-scoped kind, those in
        `mesh` (None: in every mesh)."""
        async with self.reading() as connection:
            return await listing.list_resources(connection, kind, mesh, size, offset)

    async def list_services(self, mesh: str) -> list[ServiceSummary]:
        """The services of a mesh by name, with VIPs and counts. An unknown mesh has none."""
        async with self.reading() as connection:
            return await summaries.list_services(connection, mesh)

    async def zone_contacts(self) -> dict[str, datetime | None]:
        """Each zone's last contact from its sync worker."""
        async with self.reading() as connection:
            return await summaries.zone_contacts(connection)

    # -- the change feed ----------------------------------------------------------------

    async def revision(self) -> int:
        async with self.reading() as connection:
            return await read_revision(connection)

    async def load_snapshot(self) -> Snapshot:
        """The whole registry, read in one transaction, as an immutable Snapshot."""
        view = RegistryView()
        view.apply_batch(await self.read_all())
        return view.snapshot

    async def read_all(self) -> FeedBatch:
        """Everything a snapshot needs, at one revision: where a reader starts."""
        async with self.reading() as connection:
            return await read_all(connection)

    async def read_feed(
        self, after: int, limit: int = FEED_BATCH, mark: datetime | None = None
    ) -> FeedBatch | None:
        """The next changes after revision `after` and the current state of what they touch;
        None when there are none. Raises FeedGap when the log cannot say what followed
        `after` (`mark`: the commit time of the change at `after`, as the reader saw it)."""
        async with self.reading() as connection:
            return await read_batch(connection, after, limit, mark)


__all__ = [
    "Page",
    "ServiceSummary",
    "Store",
    "Stored",
    "Transaction",
    "Unchanged",
    "VipSettings",
]
