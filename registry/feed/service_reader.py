"""Reading Kuma's service model for snapshots, in the caller's transaction: MeshServices,
MeshExternalServices, MeshMultiZoneServices (with their VIPs) and HostnameGenerators.

Their documents are kept whole as JSON, written by the store after validation; they are
read here by hand, not through the schema, because a large registry holds one
MeshService per service and the schema's validation would dominate its cold load. A
document that does not have the shape the schema gives is left out and reported, as the
reader does with every row it cannot read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from ipaddress import IPv4Address
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.feed.rows import Unreadable, in_chunks, report
from registry.meshservice.states import (
    MESH_EXTERNAL_SERVICE,
    MESH_MULTIZONE_SERVICE,
    MESH_SERVICE,
    SERVICE_KINDS,
    ExternalServiceState,
    GeneratorState,
    Labels,
    MeshServiceState,
    MultiZoneServiceState,
    ResourceKey,
    Selector,
    ServicePort,
    ServiceState,
    frozen_labels,
)
from registry.meshservice.templates import TemplateError, parse
from registry.models import (
    LEGACY_VIP_KIND,
    HostnameGeneratorRow,
    MeshExternalServiceRow,
    MeshMultiZoneServiceRow,
    MeshRow,
    MeshServiceRow,
    VipRow,
)
from registry.schema.fields import SERVICE_TAG

TABLES: dict[str, Any] = {
    MESH_SERVICE: MeshServiceRow,
    MESH_EXTERNAL_SERVICE: MeshExternalServiceRow,
    MESH_MULTIZONE_SERVICE: MeshMultiZoneServiceRow,
}
_GENERATOR_SELECTORS = {
    "meshService": MESH_SERVICE,
    "meshExternalService": MESH_EXTERNAL_SERVICE,
    "meshMultiZoneService": MESH_MULTIZONE_SERVICE,
}


class _Malformed(ValueError):
    pass


async def read_services(
    connection: AsyncConnection,
    keys: Collection[ResourceKey] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[ResourceKey, ServiceState]:
    """The service kinds' resources by (kind, mesh, name): all, or those of `keys`."""
    found: dict[ResourceKey, ServiceState] = {}
    for kind in SERVICE_KINDS:
        wanted = None if keys is None else [(mesh, name) for k, mesh, name in keys if k == kind]
        if wanted is not None and not wanted:
            continue
        table = TABLES[kind]
        query = select(MeshRow.name, table.name, table.spec, table.created_at).join(
            MeshRow, MeshRow.id == table.mesh_id
        )
        for where in in_chunks(tuple_(MeshRow.name, table.name), wanted):
            for mesh, name, document, created_at in await connection.execute(query.where(*where)):
                try:
                    found[(kind, mesh, name)] = _service(kind, mesh, name, document, created_at)
                except (_Malformed, KeyError, TypeError, AttributeError) as error:
                    report(unreadable, kind, f"{mesh}/{name}", _malformed(error))
    return found


async def read_generators(
    connection: AsyncConnection,
    names: Collection[str] | None = None,
    unreadable: Unreadable | None = None,
) -> dict[str, GeneratorState]:
    """HostnameGenerators by name: all, or those of `names`."""
    query = select(
        HostnameGeneratorRow.name, HostnameGeneratorRow.spec, HostnameGeneratorRow.created_at
    )
    found: dict[str, GeneratorState] = {}
    for where in in_chunks(HostnameGeneratorRow.name, names):
        for name, document, created_at in await connection.execute(query.where(*where)):
            try:
                found[name] = _generator(name, document, created_at)
            except (_Malformed, TemplateError, KeyError, TypeError, AttributeError) as error:
                report(unreadable, "HostnameGenerator", name, _malformed(error))
    return found


async def read_service_vips(
    connection: AsyncConnection, keys: Collection[ResourceKey] | None = None
) -> dict[ResourceKey, IPv4Address]:
    """The VIPs in use of the service kinds' resources: all, or those of `keys`."""
    query = select(VipRow.kind, VipRow.mesh, VipRow.service, VipRow.address).where(
        VipRow.released_at.is_(None), VipRow.kind != LEGACY_VIP_KIND
    )
    found: dict[ResourceKey, IPv4Address] = {}
    for where in in_chunks(tuple_(VipRow.kind, VipRow.mesh, VipRow.service), keys):
        for kind, mesh, name, address in await connection.execute(query.where(*where)):
            found[(kind, mesh, name)] = IPv4Address(address)
    return found


def selector_tag_keys(states: Iterable[ServiceState | None]) -> set[str]:
    """The inbound tags MeshService selectors ask for besides kuma.io/service: what a
    cold load must read of the dataplanes' tags."""
    keys: set[str] = set()
    for state in states:
        if isinstance(state, MeshServiceState) and state.selector.tags:
            keys.update(key for key in state.selector.tags if key != SERVICE_TAG)
    return keys


def selects_by_labels(states: Iterable[ServiceState | None]) -> bool:
    """Whether some MeshService selects dataplanes by their labels."""
    return any(
        isinstance(state, MeshServiceState) and state.selector.labels is not None
        for state in states
    )


# -- documents --------------------------------------------------------------------------


def _malformed(error: Exception) -> Exception:
    if isinstance(error, _Malformed | TemplateError):
        return error
    return _Malformed(f"its stored document is not a valid resource ({type(error).__name__})")


def _service(
    kind: str, mesh: str, name: str, document: Mapping[str, Any], created_at: datetime
) -> ServiceState:
    labels = _labels(document.get("labels"))
    spec = document.get("spec") or {}
    if kind == MESH_SERVICE:
        return MeshServiceState(
            mesh, name, labels, created_at, _selector(spec.get("selector")), _ports(spec)
        )
    if kind == MESH_EXTERNAL_SERVICE:
        match = spec["match"]
        return ExternalServiceState(
            mesh,
            name,
            labels,
            created_at,
            port=_int(match["port"]),
            protocol=_str(match.get("protocol", "tcp")),
            endpoints=tuple(
                (_str(endpoint["address"]), _int(endpoint["port"]))
                for endpoint in spec.get("endpoints") or ()
            ),
        )
    selector = spec["selector"]["meshService"]
    return MultiZoneServiceState(
        mesh, name, labels, created_at, _labels(selector.get("matchLabels")), _ports(spec)
    )


def _selector(selector: Mapping[str, Any] | None) -> Selector:
    if not selector:
        return Selector()
    if selector.get("dataplaneTags") is not None:
        return Selector(tags=_labels(selector["dataplaneTags"]))
    if selector.get("dataplaneRef") is not None:
        return Selector(dataplane=_str(selector["dataplaneRef"]["name"]))
    if selector.get("dataplaneLabels") is not None:
        return Selector(labels=_labels(selector["dataplaneLabels"].get("matchLabels")))
    return Selector()


def _ports(spec: Mapping[str, Any]) -> tuple[ServicePort, ...]:
    ports = []
    for port in spec.get("ports") or ():
        number = _int(port["port"])
        target = port.get("targetPort")
        if target is not None and not isinstance(target, int | str):
            raise _Malformed(f"targetPort {target!r} is neither a number nor a name")
        ports.append(
            ServicePort(
                name=_str(port.get("name") or str(number)),
                port=number,
                app_protocol=_str(port.get("appProtocol", "tcp")),
                target_port=target,
            )
        )
    return tuple(ports)


def _generator(name: str, document: Mapping[str, Any], created_at: datetime) -> GeneratorState:
    spec = document["spec"]
    chosen = [(key, value) for key, value in spec["selector"].items() if value is not None]
    if len(chosen) != 1 or chosen[0][0] not in _GENERATOR_SELECTORS:
        raise _Malformed("its selector does not pick exactly one kind")
    key, selector = chosen[0]
    return GeneratorState(
        name=name,
        labels=_labels(document.get("labels")),
        created_at=created_at,
        kind=_GENERATOR_SELECTORS[key],
        match_labels=_labels((selector or {}).get("matchLabels")),
        template=parse(_str(spec["template"])),
    )


def _labels(value: Any) -> Labels:
    if value is None:
        return frozen_labels(None)
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(label, str) for key, label in value.items()
    ):
        raise _Malformed("labels that are not a map of strings")
    return frozen_labels(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"{value!r} is not a number")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Malformed(f"{value!r} is not a string")
    return value
