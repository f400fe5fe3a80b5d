"""What every read of the feed's state shares: keys asked for in chunks, and rows left
out because they could not be read."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, TypeVar

from sqlalchemy import ColumnElement

from registry.feed.states import UnreadableRow

K = TypeVar("K")
Unreadable = list[UnreadableRow]

# Keys per IN list: well under every database's limit on bound parameters.
CHUNK = 500


def in_chunks(column: Any, keys: Collection[K] | None) -> Iterator[tuple[ColumnElement[bool], ...]]:
    """WHERE clauses covering `keys` in chunks; one empty clause for "all"."""
    if keys is None:
        yield ()
        return
    ordered = list(keys)
    for start in range(0, len(ordered), CHUNK):
        yield (column.in_(ordered[start : start + CHUNK]),)


def report(unreadable: Unreadable | None, kind: str, key: str, error: Exception) -> None:
    """Note a row left out, with why (bounded: the reason may echo stored text)."""
    if unreadable is not None:
        reason = str(error).replace("\n", " ")
        unreadable.append(UnreadableRow(kind, key, reason[:300]))
