#!/usr/bin/env python
"""How long the DNS zone tables take to build, and to update by one change, at scale.

Builds a snapshot of 100,000 dataplanes serving 10,000 services (10 endpoints each, in
one mesh plus a few small ones), then times `Handler.update(snapshot, delta)` for single
changes (an endpoint turning unready, a service added, a service removed) against a full
rebuild. Prints figures; asserts nothing.

    .venv/bin/python scripts/bench/zone_update.py [--services 10000] [--per-service 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dnsserver import Handler  # noqa: E402
from meshdns.settings import Settings  # noqa: E402
from meshdns.wiring import zone_config  # noqa: E402
from registry.snapshot import Delta, Endpoint, MeshView, ServiceView, Snapshot  # noqa: E402


def build_snapshot(services: int, per_service: int) -> Snapshot:
    views = {}
    clients = {}
    for s in range(services):
        name = f"svc-{s}" if s % 10 else f"svc_{s}_ns_svc_8080"  # some with Kuma aliases
        endpoints = []
        for e in range(per_service):
            address = IPv4Address(0x0A000000 + s * per_service + e + 1)
            endpoints.append(Endpoint(f"dp-{s}-{e}", address, 8080, ready=e % 7 != 6))
            clients[address] = "default"
        views[name] = ServiceView(
            name, IPv4Address(0xF0000000 + s + 1), None, endpoints=tuple(endpoints)
        )
    meshes = {"default": MeshView("default", services=MappingProxyType(views))}
    for m in range(3):
        small = {"web": ServiceView("web", IPv4Address(0xF1000000 + m + 1))}
        meshes[f"team-{m}"] = MeshView(f"team-{m}", services=MappingProxyType(small))
    return Snapshot(1, MappingProxyType(meshes), MappingProxyType(clients))


def with_service(snapshot: Snapshot, name: str, view: ServiceView | None) -> Snapshot:
    mesh = snapshot.meshes["default"]
    services = dict(mesh.services)
    if view is None:
        services.pop(name, None)
    else:
        services[name] = view
    meshes = {**snapshot.meshes, "default": replace(mesh, services=MappingProxyType(services))}
    return replace(snapshot, revision=snapshot.revision + 1, meshes=MappingProxyType(meshes))


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--per-service", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    snapshot = build_snapshot(args.services, args.per_service)
    dataplanes = args.services * args.per_service
    print(f"{dataplanes:,} dataplanes, {args.services:,} services")
    config = zone_config(Settings())
    handler = Handler(config)
    full = timed(lambda: handler.update(snapshot))
    print(f"full rebuild:                      {full:10.1f} ms")

    kinds = {}
    current = snapshot
    for i in range(args.repeat):
        name = f"svc-{(i * 37) % args.services // 10 * 10 + 1}"
        old = current.meshes["default"].services[name]
        flipped = replace(
            old,
            endpoints=(replace(old.endpoints[0], ready=not old.endpoints[0].ready),)
            + old.endpoints[1:],
        )
        for kind, view in (
            ("one endpoint changes readiness", flipped),
            ("service added", ServiceView(f"new-{i}", IPv4Address(0xF2000000 + i))),
            ("service removed", None),
        ):
            target = f"new-{i}" if kind == "service added" else name
            after = with_service(current, target, view)
            delta = Delta(services=frozenset({("default", target)}))
            kinds.setdefault(kind, []).append(timed(lambda: handler.update(after, delta)))  # noqa: B023
            current = after
        # Put the removed service back, untimed, so the next round finds it.
        current = with_service(current, name, old)
        handler.update(current, Delta(services=frozenset({("default", name)})))

    for kind, samples in kinds.items():
        print(
            f"incremental, {kind + ':':33} median {statistics.median(samples):6.3f} ms, "
            f"max {max(samples):6.3f} ms ({len(samples)} runs)"
        )


if __name__ == "__main__":
    main()
