"""Where the sync worker is in each source's change feed: a cursor kept in the *target*
database, written in the same transaction as the rows it covers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.models import SyncCursorRow

GLOBAL_SOURCE = "global"


def zone_source(zone: str) -> str:
    return f"zone:{zone}"


async def read_cursor(connection: AsyncConnection, source: str) -> int:
    revision = await connection.scalar(
        select(SyncCursorRow.revision).where(SyncCursorRow.source == source)
    )
    return int(revision or 0)


async def write_cursor(
    connection: AsyncConnection, source: str, revision: int, now: datetime
) -> None:
    result = await connection.execute(
        update(SyncCursorRow)
        .where(SyncCursorRow.source == source)
        .values(revision=revision, updated_at=now)
    )
    if not result.rowcount:
        await connection.execute(
            insert(SyncCursorRow).values(source=source, revision=revision, updated_at=now)
        )


class CursorMoved(Exception):
    """Another worker moved the cursor since we read it: drop this batch, read again."""
