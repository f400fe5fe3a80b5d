"""Reading traffic permissions for snapshots, in the caller's transaction: Kuma's
TrafficPermissions and MeshTrafficPermissions alike, as the TrafficRules by which a
client is let see other zones' services (docs/service-model.md, "Permissions").

A MeshTrafficPermission says which clients a proxy lets in; DNS can only tell clients
apart by the services of their dataplanes, so what it keeps of one is: the services it
targets, and the services its Allow entries name. Deny entries and the ``rules`` form
(SPIFFE IDs, which no client address carries) reveal nothing: the proxies enforce, DNS
reveals a name when any Allow matches.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.feed.rows import Unreadable, in_chunks, report
from registry.models import MeshRow, MeshTrafficPermissionRow, TrafficPermissionRow
from registry.schema import MeshTrafficPermission, TrafficPermission
from registry.schema.fields import SERVICE_TAG
from registry.schema.services import TargetRef
from registry.snapshot import ANY_SERVICE, TrafficRule

TRAFFIC_PERMISSION = "TrafficPermission"
MESH_TRAFFIC_PERMISSION = "MeshTrafficPermission"
PERMISSION_KINDS = (TRAFFIC_PERMISSION, MESH_TRAFFIC_PERMISSION)
# The actions of a MeshTrafficPermission's `from` entries that let traffic in.
_ALLOWING = ("Allow", "AllowWithShadowDeny")
# Top-level targetRef kinds whose targets are named by kuma.io/service (or by nothing DNS
# can tell: any service); other kinds target nothing a permission applies to.
_TARGET_KINDS = ("Mesh", "MeshSubset", "MeshService", "MeshServiceSubset", "Dataplane")

PermissionKey = tuple[str, str]  # (mesh, permission_key(kind, name))


def permission_key(kind: str, name: str) -> str:
    """How a mesh's permissions are keyed: a TrafficPermission by its name, a
    MeshTrafficPermission by ``MeshTrafficPermission/<name>`` (names hold no ``/``)."""
    return name if kind == TRAFFIC_PERMISSION else f"{kind}/{name}"


def traffic_permission_rule(permission: TrafficPermission) -> TrafficRule:
    return TrafficRule(
        sources=frozenset(source.service for source in permission.sources),
        destinations=frozenset(target.service for target in permission.destinations),
    )


def mesh_traffic_permission_rule(permission: MeshTrafficPermission) -> TrafficRule | None:
    """What ``permission`` lets DNS reveal; None when nothing (no Allow entry, or the
    ``rules`` form, or a target kind Kuma refuses)."""
    spec = permission.spec
    target = _target(spec.target_ref)
    sources = {
        source
        for entry in spec.from_ or ()
        if entry.default.action in _ALLOWING and (source := _source(entry.target_ref)) is not None
    }
    if target is None or not sources:
        return None
    return TrafficRule(sources=frozenset(sources), destinations=frozenset({target}))


def _target(ref: TargetRef | None) -> str | None:
    """The service a top-level targetRef names, ``*`` for any (or one DNS cannot tell).

    A Dataplane target is ``*``: the dataplanes it selects are the destination's, in its
    zone, and a zone's registry holds no other zone's dataplanes, while other zones'
    services are all that permissions gate here.
    """
    if ref is None or ref.kind in ("Mesh", "Dataplane"):
        return ANY_SERVICE
    if ref.kind not in _TARGET_KINDS:
        return None
    return _service_named(ref)


def _source(ref: TargetRef) -> str | None:
    """The service a `from` entry names, ``*`` for any; None for a kind Kuma refuses."""
    if ref.kind == "Mesh":
        return ANY_SERVICE
    if ref.kind not in ("MeshSubset", "MeshService", "MeshServiceSubset"):
        return None
    return _service_named(ref)


def _service_named(ref: TargetRef) -> str:
    """MeshSubset: its kuma.io/service tag; MeshService(Subset): its name; ``*`` when it
    names the service by neither (other tags, or labels)."""
    if ref.kind == "MeshSubset":
        return (ref.tags or {}).get(SERVICE_TAG, ANY_SERVICE)
    return ref.name or ANY_SERVICE


async def read_permissions(
    connection: AsyncConnection,
    keys: Collection[tuple[str, str, str]] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[PermissionKey, TrafficRule]:
    """The rules of TrafficPermissions and MeshTrafficPermissions, by (mesh,
    :func:`permission_key`): all, or those of `keys` ((kind, mesh, name)) that exist
    and allow something."""
    found: dict[PermissionKey, TrafficRule] = {}
    for kind, table in (
        (TRAFFIC_PERMISSION, TrafficPermissionRow),
        (MESH_TRAFFIC_PERMISSION, MeshTrafficPermissionRow),
    ):
        wanted = None if keys is None else [(mesh, name) for k, mesh, name in keys if k == kind]
        if wanted is not None and not wanted:
            continue
        query = select(MeshRow.name, table.name, table.spec).join(
            MeshRow, MeshRow.id == table.mesh_id
        )
        for where in in_chunks(tuple_(MeshRow.name, table.name), wanted):
            for mesh, name, document in await connection.execute(query.where(*where)):
                rule = _rule(kind, document, unreadable, f"{mesh}/{name}")
                if rule is not None:
                    found[(mesh, permission_key(kind, name))] = rule
    return found


def _rule(
    kind: str, document: object, unreadable: Unreadable | None, key: str
) -> TrafficRule | None:
    try:
        if kind == TRAFFIC_PERMISSION:
            return traffic_permission_rule(TrafficPermission.model_validate(document))
        return mesh_traffic_permission_rule(MeshTrafficPermission.model_validate(document))
    except ValueError as error:
        report(unreadable, kind, key, error)
        return None
