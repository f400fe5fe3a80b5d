"""The HostnameGenerators a control plane starts with, as Kuma's (its Kubernetes-only ones
left out): a standalone or zone control plane names its own MeshServices
``<name>.svc.mesh.local`` and MeshExternalServices ``<name>.extsvc.mesh.local``; a global
one names what the zones and it hold, a zone's MeshServices with the zone in the name."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from registry.models import HostnameGeneratorRow
from registry.schema import HostnameGenerator
from registry.store.transactions import Transaction, Unchanged
from registry.store.writes import put_resource
from registry.write_rules import GLOBAL

ORIGIN_LABEL = "kuma.io/origin"
_LOCAL = {ORIGIN_LABEL: "zone"}
_SYNCED = {ORIGIN_LABEL: "global"}


def _generator(
    name: str, selector: str, match: dict[str, str], template: str, labels: dict[str, str]
) -> HostnameGenerator:
    document: dict[str, Any] = {
        "type": "HostnameGenerator",
        "name": name,
        "spec": {"selector": {selector: {"matchLabels": match}}, "template": template},
    }
    if labels:
        document["labels"] = labels
    return HostnameGenerator.model_validate(document)


def default_hostname_generators(mode: str) -> tuple[HostnameGenerator, ...]:
    """Kuma's default HostnameGenerators for a control plane in `mode`."""
    if mode == GLOBAL:
        return (
            _generator(
                "synced-universal-mesh-service",
                "meshService",
                {**_SYNCED, "kuma.io/env": "universal"},
                "{{ .DisplayName }}.svc.{{ .Zone }}.mesh.local",
                {},
            ),
            _generator(
                "synced-mesh-multi-zone-service",
                "meshMultiZoneService",
                _SYNCED,
                "{{ .DisplayName }}.mzsvc.mesh.local",
                {},
            ),
            _generator(
                "synced-mesh-external-service",
                "meshExternalService",
                _SYNCED,
                "{{ .DisplayName }}.extsvc.mesh.local",
                {},
            ),
        )
    return (
        _generator(
            "local-mesh-external-service",
            "meshExternalService",
            _LOCAL,
            "{{ .DisplayName }}.extsvc.mesh.local",
            _LOCAL,
        ),
        _generator(
            "local-universal-mesh-service",
            "meshService",
            _LOCAL,
            "{{ .DisplayName }}.svc.mesh.local",
            _LOCAL,
        ),
    )


async def put_absent_generators(transaction: Transaction, mode: str) -> list[str]:
    """Write those of the default generators of `mode` that no generator's name is taken
    by (one changed since is left as it is; a deleted one comes back, as in Kuma); the
    names written. Raises Unchanged when all exist, so the transaction writes nothing."""
    wanted = default_hostname_generators(mode)
    present = set(
        await transaction.connection.scalars(
            select(HostnameGeneratorRow.name).where(
                HostnameGeneratorRow.name.in_([generator.name for generator in wanted])
            )
        )
    )
    absent = [generator for generator in wanted if generator.name not in present]
    if not absent:
        raise Unchanged
    for generator in absent:
        await put_resource(transaction, generator, None)
    return [generator.name for generator in absent]
