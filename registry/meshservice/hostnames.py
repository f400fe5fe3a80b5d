"""The hostnames HostnameGenerators give MeshServices and their kin, as Kuma's generator
gives them: who gets which name, and each generator's condition on each resource.

A generator names the resources of its selector's kind whose labels have every one of
its ``matchLabels``. Hostnames are unique per mesh and kind across all generators: the
generators are taken those of origin ``zone`` first, then the older, then by name; within
one, the older resources first, then by name; the first resource to render a hostname
keeps it, and a later, different one gets a ``Collision`` condition and no name. A render
error or a result that is no DNS name gives ``TemplateError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from registry.meshservice.states import (
    DISPLAY_NAME_LABEL,
    NAMESPACE_LABEL,
    ZONE_LABEL,
    GeneratorState,
    ServiceState,
    matches,
)
from registry.meshservice.templates import TemplateError, hostname_problem, static_suffix

GENERATED = "Generated"  # the condition's type, and its reason on success
TEMPLATE_ERROR = "TemplateError"
COLLISION = "Collision"


@dataclass(frozen=True, slots=True)
class Condition:
    """How one generator fared with one resource (Kuma's ``Generated`` condition)."""

    generator: str
    status: str  # "True" or "False"
    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class Naming:
    """What the generators gave one resource, each list by generator name."""

    addresses: tuple[tuple[str, str], ...]  # (hostname, generator)
    conditions: tuple[Condition, ...]

    @property
    def hostnames(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(hostname for hostname, _ in self.addresses))


def ordered_generators(generators: Iterable[GeneratorState]) -> list[GeneratorState]:
    """Kuma's order: origin zone first, then older first, then by name."""
    return sorted(
        generators,
        key=lambda generator: (not generator.origin_zone, generator.created_at, generator.name),
    )


def assign_hostnames(
    kind: str,
    generators: Iterable[GeneratorState],
    resources: Iterable[ServiceState],
    local_zone: str,
) -> dict[str, Naming]:
    """The naming of each of `resources` (of one mesh and of `kind`) that some generator
    of that kind selects, by resource name. `local_zone` is ``.Zone`` for a resource
    without a kuma.io/zone label."""
    ordered = sorted(resources, key=lambda resource: (resource.created_at, resource.name))
    owners: dict[str, str] = {}  # hostname -> the resource that has it
    addresses: dict[str, dict[str, str]] = {}  # resource -> generator -> hostname
    conditions: dict[str, dict[str, Condition]] = {}
    for generator in ordered_generators(g for g in generators if g.kind == kind):
        for resource in ordered:
            if not matches(generator.match_labels, resource.labels):
                continue
            hostname, condition = _render(generator, resource, local_zone)
            if hostname is not None:
                owner = owners.setdefault(hostname, resource.name)
                if owner != resource.name:
                    condition = Condition(
                        generator.name,
                        "False",
                        COLLISION,
                        f"Hostname collision with {kind}: {resource.name}",
                    )
                else:
                    addresses.setdefault(resource.name, {})[generator.name] = hostname
            conditions.setdefault(resource.name, {})[generator.name] = condition
    namings: dict[str, Naming] = {}
    for name, by_generator in conditions.items():
        named = addresses.get(name, {})
        namings[name] = Naming(
            addresses=tuple((named[generator], generator) for generator in sorted(named)),
            conditions=tuple(by_generator[generator] for generator in sorted(by_generator)),
        )
    return namings


def template_values(resource: ServiceState, local_zone: str) -> Mapping[str, str]:
    """What a template's fields stand for, for `resource`."""
    labels = resource.labels
    return {
        "Name": resource.name,
        "DisplayName": labels.get(DISPLAY_NAME_LABEL, resource.name),
        "Namespace": labels.get(NAMESPACE_LABEL, ""),
        "Mesh": resource.mesh,
        "Zone": labels.get(ZONE_LABEL, local_zone),
    }


def _render(
    generator: GeneratorState, resource: ServiceState, local_zone: str
) -> tuple[str | None, Condition]:
    try:
        hostname = generator.template.render(template_values(resource, local_zone), resource.labels)
    except TemplateError as error:
        message = (
            "pre evaluation of template with parameters failed with "
            f"error={json.dumps(error.message)}"
        )
        return None, Condition(generator.name, "False", TEMPLATE_ERROR, message)
    problem = hostname_problem(hostname)
    if problem is not None:
        return None, Condition(generator.name, "False", TEMPLATE_ERROR, f"generated {problem}")
    return hostname, Condition(generator.name, "True", GENERATED)


HOSTNAMES_ZONE = "mesh.local"  # where Kuma's default generators' names all fall


def hostname_zones(generators: Iterable[GeneratorState]) -> frozenset[str]:
    """The DNS zones the generators' hostnames fall under: each template's static suffix,
    and ``mesh.local`` when one of them lies inside it."""
    zones = {suffix for g in generators if (suffix := static_suffix(g.template)) is not None}
    if any(zone.endswith("." + HOSTNAMES_ZONE) for zone in zones):
        zones.add(HOSTNAMES_ZONE)
    return frozenset(zones)
