"""What the sync worker tells about its work: a line per batch, counters for its metrics,
and a progress bar while a direction is far behind."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

PUSH = "zone->global"
PULL = "global->zone"


@dataclass(slots=True)
class BatchReport:
    """What one batch did, for the log's summary line."""

    direction: str
    changes: int
    revision: int
    written: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        parts = ", ".join(f"{count} {what}" for what, count in self.written.items() if count)
        return (
            f"{self.direction}: {self.changes} changes up to revision {self.revision} "
            f"({parts or 'nothing to write'}) in {self.seconds * 1000:.0f} ms"
        )


@dataclass(slots=True)
class SyncStats:
    """What a worker has done since it started, for its metrics."""

    changes: dict[str, int] = field(default_factory=lambda: {PUSH: 0, PULL: 0})
    # Rows written, by (direction, what: dataplanes, meshes...).
    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=lambda: {PUSH: 0, PULL: 0})
    errors: int = 0  # rounds cut short by a lost database
    caught_up_at: float | None = None  # monotonic: when both directions last were
    lag: dict[str, int] | None = None  # the last measured (SyncWorker.lag)

    def record(self, report: BatchReport) -> None:
        self.changes[report.direction] = self.changes.get(report.direction, 0) + report.changes
        self.batches[report.direction] = self.batches.get(report.direction, 0) + 1
        for what, count in report.written.items():
            key = (report.direction, what)
            self.rows[key] = self.rows.get(key, 0) + count


@contextlib.contextmanager
def progress(label: str, after: int | None) -> Iterator[Callable[[int], None]]:
    """Yields `advance(count)`; a progress bar (counts and rate) appears once `after`
    changes are done (None: never)."""
    state: dict[str, Any] = {"bar": None, "done": 0}

    def advance(count: int) -> None:
        state["done"] += count
        if state["bar"] is not None:
            state["bar"].update(count)
        elif after is not None and state["done"] >= after:
            state["bar"] = _bar(label, state["done"])

    try:
        yield advance
    finally:
        if state["bar"] is not None:
            state["bar"].close()


def _bar(label: str, done: int) -> Any:
    from tqdm import tqdm

    return tqdm(desc=label, initial=done, unit=" changes", unit_scale=True, mininterval=0.5)
