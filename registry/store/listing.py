"""Reading resources as stored, in the caller's transaction: one by name, or a page of a
listing (by name in byte order, optionally filtered by inbound tags)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from registry.errors import NotFound
from registry.models import DataplaneRow, InboundRow, InboundTagRow, MeshRow
from registry.schema import Dataplane, Mesh, Resource
from registry.store.kept_whole import MESH_SCOPED, MODELS, TABLES, missing

ANY_VALUE = "*"  # a tag filter value meaning "the tag is present, whatever its value"


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


async def get_mesh(connection: AsyncConnection, name: str) -> Stored:
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


async def list_meshes(connection: AsyncConnection, size: int, offset: int) -> Page:
    query = select(MeshRow.name, MeshRow.spec, MeshRow.created_at, MeshRow.modified_at)
    return await _page(connection, Mesh, query, [MeshRow.name], size, offset)


async def get_dataplane(connection: AsyncConnection, mesh: str, name: str) -> Stored:
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
    connection: AsyncConnection,
    mesh: str,
    size: int,
    offset: int,
    tags: Mapping[str, str] | None,
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
    return await _page(connection, Dataplane, query, [DataplaneRow.name], size, offset)


async def get_resource(connection: AsyncConnection, kind: str, mesh: str, name: str) -> Stored:
    """A resource kept whole (a mesh-scoped one: in `mesh`)."""
    table = TABLES[kind]
    query = select(table.spec, table.created_at, table.modified_at).where(table.name == name)
    if kind in MESH_SCOPED:
        query = query.join(MeshRow, MeshRow.id == table.mesh_id).where(MeshRow.name == mesh)
    row = (await connection.execute(query)).one_or_none()
    if row is None:
        raise NotFound(missing(kind, mesh, name))
    return _stored(MODELS[kind], row)


async def list_resources(
    connection: AsyncConnection, kind: str, mesh: str | None, size: int, offset: int
) -> Page:
    """A page of the resources of `kind` by name; of a mesh-scoped kind, those in `mesh`,
    or with `mesh` None those of every mesh (by name, then mesh)."""
    table = TABLES[kind]
    query = select(table.name, table.spec, table.created_at, table.modified_at)
    order = [table.name]
    if kind in MESH_SCOPED:
        query = query.join(MeshRow, MeshRow.id == table.mesh_id)
        if mesh is None:
            order.append(MeshRow.name)
        else:
            query = query.where(MeshRow.name == mesh)
    return await _page(connection, MODELS[kind], query, order, size, offset)


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
    order: list[Any],
    size: int,
    offset: int,
) -> Page:
    total = await connection.scalar(select(func.count()).select_from(query.subquery()))
    by_names = [_by_name(connection, column) for column in order]
    rows = await connection.execute(query.order_by(*by_names).limit(size).offset(offset))
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
