"""`meshdns export`: every resource a control plane holds of its own, as Kuma-format
multi-document YAML (as `kumactl export` writes it), with each mesh's VIPs recorded in a
`VirtualIPs` document of meshdns's own, so that `meshdns apply -f` of the file on an empty
control plane of the same mode answers the same names with the same VIPs."""

from __future__ import annotations

from typing import Any

import click
import yaml

from meshdns.cli.client import _all_items, api_path, api_request, api_target
from meshdns.cli.group import fail
from meshdns.cli.options import settings_options
from meshdns.settings import Settings
from registry.schema.vips import VIRTUAL_IPS
from registry.write_rules import writable

# Resource types across the registry, then those of each mesh, by collection path: the
# order `apply` needs (a mesh before what is in it; HostnameGenerators before the
# services they name).
GLOBAL_SCOPED = (
    ("Mesh", "meshes"),
    ("HostnameGenerator", "hostnamegenerators"),
    ("Zone", "zones"),
    ("ZoneIngress", "zoneingresses"),
    ("ZoneEgress", "zoneegresses"),
)
MESH_SCOPED = (
    ("Dataplane", "dataplanes"),
    ("TrafficPermission", "traffic-permissions"),
    ("MeshTrafficPermission", "meshtrafficpermissions"),
    ("MeshService", "meshservices"),
    ("MeshExternalService", "meshexternalservices"),
    ("MeshMultiZoneService", "meshmultizoneservices"),
)
SERVICE_KINDS = ("MeshService", "MeshExternalService", "MeshMultiZoneService")
# What the API adds to a stored resource, dropped from the export.
COMPUTED = ("creationTime", "modificationTime", "status")
# A copy the sync worker brought from elsewhere carries its origin: not ours to export.
FOREIGN_ORIGIN = {"zone": "global", "global": "zone"}


@click.command("export")
@click.option(
    "-o", "--output", default="-", show_default=True, help="File to write, or - for stdout."
)
@settings_options("export")
def export(output: str, settings: Settings) -> None:
    """Write every resource this control plane holds of its own (meshes, dataplanes, zone
    resources, policies, Kuma's service model) as multi-document YAML, each mesh's VIPs
    last: `meshdns apply -f` of it on an empty control plane restores the same answers."""
    api = api_target(settings)
    index = api_request(api, "GET", "/")
    mode = index.get("mode")
    if mode is None:
        fail(f"{api.url} did not say its mode: is it a meshdns API?")
    documents: list[dict[str, Any]] = []
    meshes: list[str] = []
    for kind, path in GLOBAL_SCOPED:
        if kind != "Mesh" and not writable(mode, kind):
            continue  # not this mode's own (replicated here, or no such thing here)
        items = _all_items(api, f"/{path}")
        if kind == "Mesh":
            meshes = [item["name"] for item in items]
        if writable(mode, kind):
            documents += [_exported(item) for item in items if _own(item, mode)]
    for mesh in meshes:
        vips: list[dict[str, Any]] = []
        for kind, path in MESH_SCOPED:
            items = _all_items(api, api_path("/meshes/{mesh}/", mesh=mesh) + path)
            if kind in SERVICE_KINDS:
                vips += [vip for item in items if (vip := _service_vip(kind, item))]
            if writable(mode, kind):
                documents += [_exported(item) for item in items if _own(item, mode)]
        for service in _all_items(api, api_path("/meshes/{mesh}/services", mesh=mesh)):
            if service.get("vip") and service.get("dataplanes"):
                recorded = {"kind": "Service", "service": service["name"], "ip": service["vip"]}
                if service.get("vip6"):
                    recorded["ip6"] = service["vip6"]
                vips.append(recorded)
        if vips and mode != "global":  # global allocates no VIPs
            documents.append({"type": VIRTUAL_IPS, "mesh": mesh, "name": mesh, "vips": vips})
    text = yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)
    with click.open_file(output, "w") as stream:
        stream.write(text)
    if output != "-":
        click.echo(f"exported {len(documents)} document(s) to {output}", err=True)


def _exported(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if key not in COMPUTED}


def _own(item: dict[str, Any], mode: str) -> bool:
    origin = (item.get("labels") or {}).get("kuma.io/origin")
    return origin is None or origin != FOREIGN_ORIGIN.get(mode)


def _service_vip(kind: str, item: dict[str, Any]) -> dict[str, Any] | None:
    status = item.get("status") or {}
    vips = status.get("vips") or ([status["vip"]] if status.get("vip") else [])
    if not vips or not vips[0].get("ip"):
        return None
    return {"kind": kind, "service": item["name"], "ip": vips[0]["ip"]}


COMMANDS = (export,)
