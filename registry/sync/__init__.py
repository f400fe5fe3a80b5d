"""The sync worker: replicates one zone's registry into the global store, and back.

Both directions follow a change feed from a cursor kept in the *target* database and
written in the same transaction as the rows it covers (DESIGN, "Multi-zone"). A worker
killed at any point therefore resumes exactly where the target says it is; a batch is
either all in, cursor included, or not at all. Each batch writes the source's *current*
state of what its changes touch, so applying a batch twice, or a state newer than the
batch's last revision, is harmless: the target ends equal to the source.

Modules: ``push`` (zone -> global: the zone's own dataplanes, ingresses and egresses),
``pull`` (global -> zone: meshes, traffic permissions, other zones' ingresses),
``service_model`` (which of Kuma's MeshServices and kin each direction carries, named
and labelled as Kuma's sync does) and ``copies`` (copying them, with sweeps where a
change alone cannot tell), ``cursors`` (where each direction is), ``reports`` (what
each batch did) and ``worker`` (the run loop over both).
"""

from __future__ import annotations

from registry.sync.cursors import GLOBAL_SOURCE, read_cursor, zone_source
from registry.sync.reports import BatchReport, SyncStats
from registry.sync.worker import SyncSettings, SyncWorker

__all__ = [
    "GLOBAL_SOURCE",
    "BatchReport",
    "SyncSettings",
    "SyncStats",
    "SyncWorker",
    "read_cursor",
    "zone_source",
]
