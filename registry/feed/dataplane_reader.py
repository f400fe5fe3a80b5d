"""Reading dataplanes for snapshots, in the caller's transaction: addresses, inbounds,
readiness and liveness from the normalised columns, and, as far as MeshService selectors
ask for them, their inbound tags and labels.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any

from sqlalchemy import String, and_, cast, exists, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from registry.feed.rows import Unreadable, in_chunks, report
from registry.feed.states import NO_TAGS, DataplaneState, InboundState
from registry.meshservice.states import NO_LABELS, MeshServiceState, ServiceState, frozen_labels
from registry.models import (
    DataplaneInsightRow,
    DataplaneRow,
    InboundRow,
    InboundTagRow,
    MeshRow,
)
from registry.schema.fields import SERVICE_TAG
from registry.snapshot import BackendRef, IPAddress, Reachable


async def read_dataplanes(
    connection: AsyncConnection,
    keys: Collection[tuple[str, str]] | None = None,
    unreadable: Unreadable | None = None,
    *,
    tag_keys: Collection[str] | None = None,
    labels: bool = True,
) -> dict[tuple[str, str], DataplaneState]:
    """Dataplanes by (mesh, name): all of them, or those of `keys` that exist.

    `tag_keys` are the inbound tags to read besides kuma.io/service (None: all of them),
    `labels` whether to read the dataplanes' labels: what MeshService selectors ask for,
    which a large registry's cold load should not pay for when none does.
    """
    query = (
        select(
            MeshRow.name,
            DataplaneRow.name,
            DataplaneRow.address,
            DataplaneRow.advertised_address,
            InboundRow.service,
            InboundRow.address,
            InboundRow.port,
            InboundRow.ready,
            DataplaneInsightRow.online,
            DataplaneRow.zone,
            InboundRow.name,
            InboundRow.position,
        )
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .outerjoin(InboundRow, InboundRow.dataplane_id == DataplaneRow.id)
        .outerjoin(DataplaneInsightRow, DataplaneInsightRow.dataplane_id == DataplaneRow.id)
        .order_by(DataplaneRow.id, InboundRow.position)
    )
    rows: dict[tuple[str, str], list[Any]] = {}
    for where in in_chunks(tuple_(MeshRow.name, DataplaneRow.name), keys):
        for row in await connection.execute(query.where(*where)):
            rows.setdefault((row[0], row[1]), []).append(row)
    tags = await _inbound_tags(connection, keys, tag_keys)
    extras = await _labels_and_reachability(connection, keys, labels)
    states: dict[tuple[str, str], DataplaneState] = {}
    for key, found in rows.items():
        try:
            states[key] = _dataplane(key, found, tags.get(key, {}), *extras.get(key, (None, None)))
        except (ValueError, TypeError, AttributeError) as error:
            report(unreadable, "Dataplane", f"{key[0]}/{key[1]}", error)
    return states


InboundTags = dict[int, dict[str, str]]  # an inbound's tags by its position


async def _inbound_tags(
    connection: AsyncConnection,
    keys: Collection[tuple[str, str]] | None,
    tag_keys: Collection[str] | None,
) -> dict[tuple[str, str], InboundTags]:
    """The dataplanes' inbound tags besides kuma.io/service: those of `tag_keys`, or all."""
    if tag_keys is not None and not tag_keys:
        return {}
    query = (
        select(
            MeshRow.name,
            DataplaneRow.name,
            InboundRow.position,
            InboundTagRow.key,
            InboundTagRow.value,
        )
        .join(InboundRow, InboundRow.id == InboundTagRow.inbound_id)
        .join(DataplaneRow, DataplaneRow.id == InboundRow.dataplane_id)
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .where(
            InboundTagRow.key != SERVICE_TAG
            if tag_keys is None
            else InboundTagRow.key.in_(sorted(tag_keys))
        )
    )
    found: dict[tuple[str, str], InboundTags] = {}
    for where in in_chunks(tuple_(MeshRow.name, DataplaneRow.name), keys):
        for mesh, name, position, key, value in await connection.execute(query.where(*where)):
            found.setdefault((mesh, name), {}).setdefault(position, {})[key] = value
    return found


async def _labels_and_reachability(
    connection: AsyncConnection, keys: Collection[tuple[str, str]] | None, labels: bool
) -> dict[tuple[str, str], tuple[Any, Any]]:
    """(labels, reachable) as stored, of the dataplanes that have either (most have
    neither; labels only when asked for)."""
    columns = [DataplaneRow.reachable, *([DataplaneRow.labels] if labels else [])]
    query = (
        select(MeshRow.name, DataplaneRow.name, *columns)
        .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
        .where(or_(*(_json_set(column) for column in columns)))
    )
    found: dict[tuple[str, str], tuple[Any, Any]] = {}
    for where in in_chunks(tuple_(MeshRow.name, DataplaneRow.name), keys):
        for row in await connection.execute(query.where(*where)):
            found[(row[0], row[1])] = (row[3] if labels else None, row[2])
    return found


def _json_set(column: Any) -> Any:
    """A JSON column holding a value: neither SQL NULL nor JSON null."""
    return and_(column.is_not(None), cast(column, String) != "null")


def parse_address(text: str) -> IPAddress:
    """An address as stored (validated and normalised on the way in); ValueError if it is
    none that DNS can answer (an IPv6 address with a %scope, say).

    inet_pton is C: several times faster than ipaddress's own parser, which dominated
    reading a large registry.
    """
    try:
        return IPv4Address(inet_pton(AF_INET, text))
    except OSError:
        pass
    try:
        return IPv6Address(inet_pton(AF_INET6, text))
    except OSError:
        raise ValueError(f"address {text[:60]!r} is not an IPv4 or IPv6 address") from None


def _dataplane(
    key: tuple[str, str],
    rows: list[Any],
    tags: InboundTags,
    labels: Mapping[str, Any] | None,
    reachable: Mapping[str, Any] | None,
) -> DataplaneState:
    # The hot path of a cold load: one call per dataplane, arguments by position.
    first = rows[0]
    address = parse_address(first[2])
    addresses = {first[2]: address}  # most inbounds share it: each address parsed once
    inbounds = []
    for row in rows:
        if row[4] is None:
            continue  # a dataplane without inbounds (a gateway)
        inbound_address = addresses.get(row[5])
        if inbound_address is None:
            inbound_address = addresses[row[5]] = parse_address(row[5])
        inbound_tags = frozen_labels(tags[row[11]]) if tags and row[11] in tags else NO_TAGS
        inbounds.append(
            InboundState(row[4], inbound_address, row[6], bool(row[7]), row[10], inbound_tags)
        )
    return DataplaneState(
        key[0],
        key[1],
        address,
        parse_address(first[3]) if first[3] else None,
        tuple(inbounds),
        # No insight row: never connected by an agent, a static registration.
        first[8] is None or bool(first[8]),
        first[9],
        frozen_labels(_strings(labels)) if labels else NO_LABELS,
        _reachable(reachable),
    )


def _strings(labels: Any) -> dict[str, str] | None:
    if labels is None:
        return None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError("its labels are not a map of strings")
    return labels


def _reachable(stored: Any) -> Reachable | None:
    """A dataplane's reachableServices and reachableBackends as stored (the schema keeps
    transparentProxying as given): a malformed entry is left out, so the dataplane
    narrows to what it names well; an empty reachableServices is unset, as in Kuma."""
    if not isinstance(stored, Mapping):
        return None
    services = stored.get("services")
    backends = stored.get("backends")
    # reachableBackends is {refs: [...]}; a list of refs is taken as well.
    refs = backends.get("refs") or () if isinstance(backends, Mapping) else backends
    return Reachable(
        services=tuple(str(service) for service in services)
        if isinstance(services, list) and services
        else None,
        backends=None
        if refs is None
        else tuple(ref for entry in _entries(refs) if (ref := _backend_ref(entry)) is not None),
    )


def _entries(refs: Any) -> list[Any]:
    return refs if isinstance(refs, list) else []


def _backend_ref(entry: Any) -> BackendRef | None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("kind"), str):
        return None
    name, namespace, port, labels = (entry.get(key) for key in _REF_FIELDS)
    if not (
        isinstance(name, str | None)
        and isinstance(namespace, str | None)
        and (port is None or (isinstance(port, int) and not isinstance(port, bool)))
        and (labels is None or isinstance(labels, Mapping))
    ):
        return None
    return BackendRef(
        kind=entry["kind"],
        name=name,
        namespace=namespace,
        port=port,
        labels=None
        if labels is None
        else tuple(sorted((str(k), str(v)) for k, v in labels.items())),
    )


_REF_FIELDS = ("name", "namespace", "port", "labels")


async def selected_by(
    connection: AsyncConnection, states: Iterable[ServiceState]
) -> set[tuple[str, str]]:
    """The dataplanes (mesh, name) the MeshServices among `states` select by tags other
    than kuma.io/service, or by labels."""
    found: set[tuple[str, str]] = set()
    for state in states:
        if not isinstance(state, MeshServiceState):
            continue
        selector = state.selector
        if selector.tags and set(selector.tags) - {SERVICE_TAG}:
            query = (
                select(DataplaneRow.name)
                .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
                .where(MeshRow.name == state.mesh, _has_inbound_tagged(selector.tags))
            )
            found.update((state.mesh, name) for name in await connection.scalars(query))
        elif selector.labels is not None:
            labelled = (
                select(DataplaneRow.name, DataplaneRow.labels)
                .join(MeshRow, MeshRow.id == DataplaneRow.mesh_id)
                .where(MeshRow.name == state.mesh, _json_set(DataplaneRow.labels))
            )
            for name, labels in await connection.execute(labelled):
                if isinstance(labels, dict) and all(
                    labels.get(key) == value for key, value in selector.labels.items()
                ):
                    found.add((state.mesh, name))
    return found


def _has_inbound_tagged(tags: Mapping[str, str]) -> Any:
    """Some inbound of the dataplane has every one of `tags`."""
    inbound = aliased(InboundRow)
    conditions = [inbound.dataplane_id == DataplaneRow.id]
    for key, value in tags.items():
        if key == SERVICE_TAG:
            conditions.append(inbound.service == value)
            continue
        tag = aliased(InboundTagRow)
        conditions.append(
            exists().where(tag.inbound_id == inbound.id, tag.key == key, tag.value == value)
        )
    return exists().where(*conditions)
