"""Copying resources kept whole from one store to the other, incrementally from the change
feed, for one direction of the sync (registry/sync/service_model.py says what and how).

A batch reads the current source documents of what its changes touch and writes each
copy where it differs. A resource that is gone is deleted where its name says its copy
is; where that is not certain (a display name can differ from the name, and the labels
that said so are gone) and nothing was there, the kind's copies in that mesh are
compared whole at the next quiet moment (a *sweep*): all the source's carried resources
against all the target's copies, writing what differs, deleting what has no source. A
start sweeps everything, which also catches up a target that this sync never filled.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.feed.changes import FeedGap, read_changes
from registry.feed.rows import in_chunks
from registry.feed.states import Change
from registry.models import MeshRow
from registry.store import Store, Transaction
from registry.store.kept_whole import MESH_SCOPED, MODELS, TABLES
from registry.sync.service_model import Direction, Document

log = logging.getLogger("meshdns.sync")

Key = tuple[str, str]  # (mesh, name); "" is the mesh of a global-scoped kind
Sweep = tuple[str, str | None]  # (kind, mesh); None: every mesh


@dataclass(slots=True)
class Carried:
    """What a batch read of the source for one direction."""

    # The changed resources' current documents (None: gone), by kind and key.
    changed: dict[str, dict[Key, Document | None]] = field(default_factory=dict)
    # Every source resource of each swept kind (and mesh).
    swept: dict[Sweep, dict[Key, Document]] = field(default_factory=dict)


class ResourceCopier:
    """One direction's copies of the kinds its Direction names, into `target`."""

    def __init__(self, direction: Direction, target: Store) -> None:
        self.direction = direction
        self.target = target
        # A start compares everything once.
        self.due: set[Sweep] = {(kind, None) for kind in direction.kinds}
        self.resyncs = 0  # whole replications the source's log called for

    async def changes_after(
        self, source: AsyncConnection, cursor: int, batch: int, what: str
    ) -> tuple[list[Change], int | None]:
        """The source's next changes after `cursor` (at most `batch`), and None; or, when
        the source's log no longer follows the cursor (compacted, or lost in a failover),
        no changes and the source's revision now, to replicate `what` whole at, with
        every copied kind due for a sweep."""
        try:
            return await read_changes(source, cursor, batch), None
        except FeedGap as gap:
            log.warning("%s: %s; replicating it whole", what, gap)
            self.due |= {(kind, None) for kind in self.direction.kinds}
            self.resyncs += 1
            return [], gap.head

    def sweeping(self, changes: Iterable[Change], caught_up: bool) -> bool:
        """Whether this batch sweeps: it is the last of a catch-up and a sweep is due."""
        self.due |= {(kind, None) for kind in self.direction.sweeps({c.kind for c in changes})}
        return caught_up and bool(self.due)

    async def read(
        self, source: AsyncConnection, changes: Iterable[Change], sweep: bool
    ) -> Carried:
        """The source's side of a batch: the current documents of the changed resources
        and, with `sweep`, of the kinds due for a sweep."""
        changed: dict[str, set[Key]] = {}
        for change in changes:
            if change.kind in self.direction.kinds:
                changed.setdefault(change.kind, set()).add((change.mesh, change.name))
        carried = Carried()
        if not changed and not sweep:
            return carried
        await self.direction.prepare(source)
        for kind, keys in changed.items():
            found = await read_documents(source, kind, keys)
            carried.changed[kind] = {key: found.get(key) for key in keys}
        if sweep:
            for kind, mesh in sorted(self.due, key=lambda item: (item[0], item[1] or "")):
                if mesh is None or (kind, None) not in self.due:
                    carried.swept[(kind, mesh)] = await read_documents(source, kind, None, mesh)
        return carried

    def committed(self, carried: Carried) -> None:
        """The batch holding `carried` is in: its sweeps are done (a kind swept in every
        mesh is swept in each)."""
        whole = {kind for kind, mesh in carried.swept if mesh is None}
        self.due = {
            (kind, mesh)
            for kind, mesh in self.due
            if (kind, mesh) not in carried.swept and kind not in whole
        }

    async def write(self, transaction: Transaction, carried: Carried) -> dict[str, int]:
        """Write the target's side of a batch; counts of what was written, by kind."""
        written: dict[str, int] = {}
        meshes = set(await transaction.connection.scalars(select(MeshRow.name)))
        for (kind, mesh), documents in carried.swept.items():
            await self._sweep(transaction, kind, mesh, documents, meshes, written)
        for kind, changed in carried.changed.items():
            swept = {mesh for swept_kind, mesh in carried.swept if swept_kind == kind}
            puts: list[tuple[Document, Document]] = []  # (the source's, its copy)
            removals: list[tuple[Key, bool]] = []  # (where a copy may be, whether surely)
            for (mesh, name), document in sorted(changed.items()):
                if None in swept or mesh in swept:
                    continue  # written whole above
                if document is not None and self.direction.carries(document):
                    puts.append((document, self.direction.copy(document)))
                elif document is not None:
                    stale = self.direction.stale_copy(document)
                    if stale is not None:
                        removals.append(((mesh, stale), True))
                else:
                    target_name, certain = self.direction.gone_name(kind, mesh, name)
                    removals.append(((mesh, target_name), certain))
            current = await read_documents(
                transaction.connection,
                kind,
                [key for key, _ in removals] + [_key(copy) for _, copy in puts],
            )
            # Deletions first: a resource gone and another made in one batch ends made.
            for key, certain in removals:
                if await self._remove(transaction, kind, key, current.get(key), certain, written):
                    current.pop(key)
            for document, copy in puts:
                await self._put(
                    transaction, document, copy, current.get(_key(copy)), meshes, written, False
                )
        return written

    async def _put(
        self,
        transaction: Transaction,
        document: Document,
        copy: Document,
        current: Document | None,
        meshes: Collection[str],
        written: dict[str, int],
        sweeping: bool,
    ) -> None:
        """Write `copy` of source `document` unless the target's `current` is that."""
        kind = document["type"]
        mesh, name = _key(copy)
        if kind in MESH_SCOPED and mesh not in meshes:
            log.warning("not copying %s %r: mesh %r is not here", kind, name, mesh)
            return
        if not sweeping and name != self.direction.gone_name(kind, mesh, document["name"])[0]:
            # Named after a display name that is not its name: a copy under an earlier
            # display name, or this one once it goes, is found by a sweep.
            self.due.add((kind, mesh if kind in MESH_SCOPED else None))
        if current is not None and not self.direction.holds(current):
            log.warning("not copying %s %r: one of that name here is no copy", kind, name)
            return
        try:
            resource = MODELS[kind].model_validate(copy)
        except ValidationError as error:
            log.warning("not copying %s %r: %s", kind, name, error)
            return
        if current == _stored(resource.dump(), kind):
            return
        await self.target.put_in(transaction, resource)
        written[kind] = written.get(kind, 0) + 1

    async def _remove(
        self,
        transaction: Transaction,
        kind: str,
        key: Key,
        current: Document | None,
        certain: bool,
        written: dict[str, int],
    ) -> bool:
        """Delete the copy at `key` (`current`), when there is one; whether there was.
        When there is none and that place was not `certain`, sweep the kind in its mesh."""
        mesh, name = key
        if current is not None and self.direction.holds(current):
            await self.target.delete_in(transaction, kind, mesh, name)
            written[f"{kind} deleted"] = written.get(f"{kind} deleted", 0) + 1
            return True
        if not certain:
            self.due.add((kind, mesh if kind in MESH_SCOPED else None))
        return False

    async def _sweep(
        self,
        transaction: Transaction,
        kind: str,
        mesh: str | None,
        documents: dict[Key, Document],
        meshes: Collection[str],
        written: dict[str, int],
    ) -> None:
        """Make the target's copies of `kind` (in `mesh`) those of the source."""
        held = await read_documents(transaction.connection, kind, None, mesh)
        wanted: set[Key] = set()
        for _, document in sorted(documents.items()):
            if self.direction.carries(document):
                copy = self.direction.copy(document)
                wanted.add(_key(copy))
                current = held.get(_key(copy))
                await self._put(transaction, document, copy, current, meshes, written, True)
        for (held_mesh, name), current in sorted(held.items()):
            if (held_mesh, name) not in wanted and self.direction.holds(current):
                await self.target.delete_in(transaction, kind, held_mesh, name)
                written[f"{kind} deleted"] = written.get(f"{kind} deleted", 0) + 1


def _key(document: Document) -> Key:
    return (document.get("mesh") or "", document["name"])


def _stored(document: Document, kind: str) -> Document:
    """A document as the store keeps it (a global-scoped kind's ignored mesh left out)."""
    if kind not in MESH_SCOPED:
        document.pop("mesh", None)
    return document


async def read_documents(
    connection: AsyncConnection, kind: str, keys: Collection[Key] | None, mesh: str | None = None
) -> dict[Key, Document]:
    """The stored documents of `kind` by (mesh, name): those of `keys`, or all (of `mesh`)."""
    table = TABLES[kind]
    if kind in MESH_SCOPED:
        query = select(MeshRow.name, table.name, table.spec).join(
            MeshRow, MeshRow.id == table.mesh_id
        )
        if mesh is not None:
            query = query.where(MeshRow.name == mesh)
        column = tuple_(MeshRow.name, table.name)
        wanted: Collection[Any] | None = keys
    else:
        query = select(literal(""), table.name, table.spec)
        column = table.name
        wanted = None if keys is None else [name for _, name in keys]
    found: dict[Key, Document] = {}
    for where in in_chunks(column, wanted):
        for row_mesh, name, spec in await connection.execute(query.where(*where)):
            found[(row_mesh, name)] = spec
    return found
