"""MeshServices generated from the dataplanes' kuma.io/service tags, as Kuma's generator
does on Universal (standalone and zone control planes; a global one generates none).

In a mesh whose ``meshServices.mode`` is Everywhere, ReachableBackends or Exclusive,
every kuma.io/service of this zone's dataplanes that is an RFC 1035 label gets a
MeshService of that name: one port per distinct inbound port (named as the first
inbound to use it, else by number; its protocol from ``kuma.io/protocol`` when Kuma
knows it, else tcp), selecting ``dataplaneTags: {kuma.io/service: X}``, labelled as
Kuma labels them. One no dataplane serves any more is marked with the time and deleted
once the grace period has passed since; served again, the mark goes. In a mesh whose
mode is Disabled (the default) the generated ones are deleted. A MeshService written by
someone else (without the managed-by label) is never touched, and a name it holds is
not generated.

Each pass finds what differs in one read, then decides each of those again from the
database inside the write transaction that writes it (a few per transaction, so other
writers wait for no long pass), so two `serve` processes on one database never fight:
the second finds nothing left to do. A pass that finds nothing to do writes nothing (no
revision). Passes run when the follower
applies a change of dataplanes or meshes, at most one every ``MIN_INTERVAL`` seconds,
and every ``period`` seconds for the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.errors import DatabaseUnavailable, RegistryError
from registry.feed.rows import in_chunks
from registry.feed.states import MESH_SERVICES_DISABLED, MESH_SERVICES_MODES
from registry.meshservice.states import (
    DEFAULT_ZONE,
    DISPLAY_NAME_LABEL,
    ENV_LABEL,
    GRACE_PERIOD_LABEL,
    MANAGED_BY_GENERATOR,
    MANAGED_BY_LABEL,
    MESH_LABEL,
    MESH_SERVICE,
    ORIGIN_LABEL,
    ORIGIN_ZONE,
    ZONE_LABEL,
)
from registry.models import DataplaneRow, InboundRow, InboundTagRow, MeshRow, MeshServiceRow
from registry.schema import MeshService
from registry.schema.fields import PROTOCOL_TAG
from registry.schema.services import APP_PROTOCOLS, label_name_problem
from registry.snapshot import Delta
from registry.store import Store, Transaction, Unchanged

log = logging.getLogger("meshdns.meshservice")

GRACE_PERIOD = 3600.0  # seconds a MeshService no dataplane serves is kept (Kuma's 1h)
PERIOD = 10.0  # seconds between passes when nothing wakes the generator
MIN_INTERVAL = 2.0  # seconds between passes at the most (Kuma generates every 2 s)
WRITE_BATCH = 50  # MeshServices written per transaction: other writers wait for no more
ORIGIN_GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class Plan:
    """What one pass wrote: MeshServices put (new or changed) and deleted."""

    puts: tuple[MeshService, ...] = ()
    deletes: tuple[tuple[str, str], ...] = ()  # (mesh, name)

    def __bool__(self) -> bool:
        return bool(self.puts or self.deletes)


Action = MeshService | tuple[str, str]  # put this, or delete (mesh, name)


@dataclass(slots=True)
class _Port:
    name: str
    port: int
    protocol: str


@dataclass(slots=True)
class _Desired:
    ports: dict[int, _Port] = field(default_factory=dict)


class MeshServiceGenerator:
    """Keeps the generated MeshServices in line with the dataplanes (see the module).

    `zone` is this control plane's (its ``kuma.io/zone`` label; none: "default").
    """

    def __init__(
        self,
        store: Store,
        *,
        zone: str | None = None,
        grace_period: float = GRACE_PERIOD,
        period: float = PERIOD,
        min_interval: float = MIN_INTERVAL,
    ) -> None:
        self.store = store
        self.zone = zone or DEFAULT_ZONE
        self.grace_period = grace_period
        self.period = period
        self.min_interval = min_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reported: set[tuple[str, str]] = set()  # names not generated, logged once
        self._failure: str | None = None  # the last pass's error, logged once
        # What the next pass looks at: everything, or these (mesh, kuma.io/service) pairs.
        self._everything = True
        self._services: set[tuple[str, str]] = set()

    def wake(self) -> None:
        """Run a full pass soon."""
        self._everything = True
        self._wake.set()

    def changed(self, delta: Delta | None) -> None:
        """The follower applied changes of dataplanes or meshes (`delta` None: it loaded
        everything): look again at the services they touched, or at everything.

        A change a delta does not show (an inbound's name or protocol alone) waits for
        the periodic pass."""
        if delta is None or delta.meshes:
            self._everything = True
        else:
            self._services |= delta.services
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="meshservice-generator")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Pass after pass until cancelled."""
        while True:
            self._wake.clear()
            started = time.monotonic()
            everything, services = self._everything, self._services
            self._everything, self._services = False, set()
            try:
                await self.generate(only=None if everything else services)
            except DatabaseUnavailable as error:
                log.debug("MeshService generation waits for the database: %s", error)
                self._everything = True  # what this pass was to look at, and the rest
            except RegistryError as error:
                if str(error) != self._failure:  # a lasting failure is logged once
                    log.warning("MeshService generation failed, tried again later: %s", error)
                self._failure = str(error)
                self._everything = True
            else:
                self._failure = None
            try:
                await asyncio.wait_for(self._wake.wait(), self.period)
            except TimeoutError:
                self._everything = True  # the periodic pass: the grace period, and the rest
            await asyncio.sleep(max(0.0, started + self.min_interval - time.monotonic()))

    async def generate(
        self, now: datetime | None = None, only: Collection[tuple[str, str]] | None = None
    ) -> Plan:
        """One pass: write what differs (nothing when nothing does); what it wrote. With
        `only`, about those (mesh, name) pairs alone.

        What differs is found in one read; each of those is decided again from the
        database inside the write transaction that writes it, a few at a time, so the
        registry's writers are held up for a few writes, not for all of them.
        """
        now = now or datetime.now(UTC)
        async with self.store.reading() as connection:
            differing = await self._differing(connection, now, only)
        puts: list[MeshService] = []
        deletes: list[tuple[str, str]] = []
        for start in range(0, len(differing), WRITE_BATCH):
            try:
                async with self.store.writing() as transaction:
                    wrote = await self._write(
                        transaction, differing[start : start + WRITE_BATCH], now
                    )
            except Unchanged:
                continue  # another process did it
            puts += [action for action in wrote if isinstance(action, MeshService)]
            deletes += [action for action in wrote if not isinstance(action, MeshService)]
        for service in puts:
            log.info("generated MeshService %r in mesh %r", service.name, service.mesh)
        for mesh, name in deletes:
            log.info("deleted generated MeshService %r in mesh %r", name, mesh)
        return Plan(tuple(puts), tuple(deletes))

    async def _write(
        self, transaction: Transaction, keys: list[tuple[str, str]], now: datetime
    ) -> list[Action]:
        """Decide again on each of `keys` (mesh, name) under the write lock, and write;
        what was written. Unchanged when nothing was."""
        connection = transaction.connection
        meshes = {mesh: (mesh_id, mode) for mesh_id, mesh, mode in await _meshes(connection)}
        wrote: list[Action] = []
        for mesh in sorted({mesh for mesh, _ in keys} & meshes.keys()):
            mesh_id, mode = meshes[mesh]
            names = sorted(name for m, name in keys if m == mesh)
            # Read for all of them at once: a read per MeshService made a pass over a large
            # registry take a query per service.
            existing = await _mesh_services(connection, mesh_id, names)
            desired = {}
            if mode != MESH_SERVICES_DISABLED:
                desired = await self._desired(connection, mesh_id, mesh, names)
            for name in names:
                action = self._decide(mesh, name, mode, existing.get(name), desired.get(name), now)
                if isinstance(action, MeshService):
                    await self.store.put_in(transaction, action)
                elif action is not None:
                    await self.store.delete_in(transaction, MESH_SERVICE, mesh, name)
                if action is not None:
                    wrote.append(action)
        if not wrote:
            raise Unchanged
        return wrote

    async def _differing(
        self,
        connection: AsyncConnection,
        now: datetime,
        only: Collection[tuple[str, str]] | None = None,
    ) -> list[tuple[str, str]]:
        """The MeshServices (mesh, name) to write or delete now (of `only`, if given)."""
        differing: list[tuple[str, str]] = []
        for mesh_id, mesh, mode in await _meshes(connection):
            names = None if only is None else sorted(name for m, name in only if m == mesh)
            if names is not None and not names:
                continue
            existing = await _mesh_services(connection, mesh_id, names)
            desired = {}
            if mode != MESH_SERVICES_DISABLED:
                desired = await self._desired(connection, mesh_id, mesh, names)
            for name in sorted(existing.keys() | desired.keys()):
                action = self._decide(mesh, name, mode, existing.get(name), desired.get(name), now)
                if action is not None:
                    differing.append((mesh, name))
        return differing

    def _decide(
        self,
        mesh: str,
        name: str,
        mode: str,
        existing: Mapping[str, Any] | None,
        desired: _Desired | None,
        now: datetime,
    ) -> Action | None:
        """What to do about MeshService `name`: put it (as returned), delete it (its key),
        or nothing. `desired` is what this zone's dataplanes call for (None: nothing)."""
        ours = existing is not None and self._ours(existing)
        if existing is not None and not ours:
            return None  # written by someone else (or another zone's): theirs wins
        if mode == MESH_SERVICES_DISABLED:
            return (mesh, name) if ours else None
        if desired is not None:
            service = self._service(mesh, name, desired, existing)
            return service if existing is None or _differs(service, existing) else None
        if existing is None:
            return None
        labels = dict(existing.get("labels") or {})
        started = _started(labels.get(GRACE_PERIOD_LABEL))
        if started is None:
            labels[GRACE_PERIOD_LABEL] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            return MeshService.model_validate({**existing, "labels": labels})
        if (now - started).total_seconds() >= self.grace_period:
            return (mesh, name)
        return None

    def _ours(self, document: Mapping[str, Any]) -> bool:
        """Generated here: managed by the generator, and of this zone's own."""
        labels = document.get("labels") or {}
        return (
            labels.get(MANAGED_BY_LABEL) == MANAGED_BY_GENERATOR
            and labels.get(ORIGIN_LABEL) != ORIGIN_GLOBAL
            and labels.get(ZONE_LABEL, self.zone) == self.zone
        )

    async def _desired(
        self,
        connection: AsyncConnection,
        mesh_id: int,
        mesh: str,
        services: Collection[str] | None = None,
    ) -> dict[str, _Desired]:
        """The MeshServices this zone's dataplanes of the mesh call for (those of
        `services` only, if given), by name. The first inbound (older dataplanes first)
        to use a port names it and gives its protocol."""
        query = (
            select(InboundRow.service, InboundRow.port, InboundRow.name, InboundTagRow.value)
            .join(DataplaneRow, DataplaneRow.id == InboundRow.dataplane_id)
            .outerjoin(
                InboundTagRow,
                (InboundTagRow.inbound_id == InboundRow.id) & (InboundTagRow.key == PROTOCOL_TAG),
            )
            .where(DataplaneRow.mesh_id == mesh_id, DataplaneRow.zone.is_(None))
            .order_by(DataplaneRow.created_at, DataplaneRow.name, InboundRow.position)
        )
        rows = [
            row
            for where in in_chunks(InboundRow.service, services)
            for row in await connection.execute(query.where(*where))
        ]
        desired: dict[str, _Desired] = {}
        for served, port, name, protocol in rows:
            if served not in desired:
                problem = label_name_problem(served)
                if problem is not None:
                    if (mesh, served) not in self._reported:
                        self._reported.add((mesh, served))
                        log.warning(
                            "no MeshService generated for kuma.io/service %r of mesh %r: "
                            "its name %s",
                            served,
                            mesh,
                            problem,
                        )
                    continue
            ports = desired.setdefault(served, _Desired()).ports
            if port not in ports:
                ports[port] = _Port(
                    name or str(port), port, protocol if protocol in APP_PROTOCOLS else "tcp"
                )
        return desired

    def _service(
        self, mesh: str, name: str, desired: _Desired, existing: Mapping[str, Any] | None
    ) -> MeshService:
        labels = dict((existing or {}).get("labels") or {})
        labels.pop(GRACE_PERIOD_LABEL, None)
        labels.update(
            {
                MESH_LABEL: mesh,
                DISPLAY_NAME_LABEL: name,
                MANAGED_BY_LABEL: MANAGED_BY_GENERATOR,
                ENV_LABEL: "universal",
                ZONE_LABEL: self.zone,
                ORIGIN_LABEL: ORIGIN_ZONE,
            }
        )
        ports = [desired.ports[port] for port in sorted(desired.ports)]
        return MeshService.model_validate(
            {
                "type": MESH_SERVICE,
                "mesh": mesh,
                "name": name,
                "labels": labels,
                "spec": {
                    "selector": {"dataplaneTags": {"kuma.io/service": name}},
                    "ports": [
                        {
                            "name": port.name,
                            "port": port.port,
                            "targetPort": port.port,
                            "appProtocol": port.protocol,
                        }
                        for port in ports
                    ],
                },
            }
        )


async def _meshes(connection: AsyncConnection) -> list[tuple[int, str, str]]:
    """Every mesh's id, name and meshServices.mode."""
    found = []
    for mesh_id, name, spec in await connection.execute(
        select(MeshRow.id, MeshRow.name, MeshRow.spec).order_by(MeshRow.name)
    ):
        mode = ((spec or {}).get("meshServices") or {}).get("mode", MESH_SERVICES_DISABLED)
        found.append(
            (mesh_id, name, mode if mode in MESH_SERVICES_MODES else MESH_SERVICES_DISABLED)
        )
    return found


async def _mesh_services(
    connection: AsyncConnection, mesh_id: int, names: Collection[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The MeshServices of a mesh as stored (those of `names` only, if given), by name."""
    query = select(MeshServiceRow.name, MeshServiceRow.spec).where(
        MeshServiceRow.mesh_id == mesh_id
    )
    found: dict[str, dict[str, Any]] = {}
    for where in in_chunks(MeshServiceRow.name, names):
        for name, document in await connection.execute(query.where(*where)):
            if isinstance(document, dict):
                found[name] = document
    return found


def _differs(service: MeshService, stored: Mapping[str, Any]) -> bool:
    wanted = service.dump()
    return (wanted.get("labels"), wanted.get("spec")) != (stored.get("labels"), stored.get("spec"))


def _started(text: str | None) -> datetime | None:
    """When the grace period began, from its label; None when unset or unreadable."""
    if not text:
        return None
    try:
        started = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return started if started.tzinfo is not None else started.replace(tzinfo=UTC)
