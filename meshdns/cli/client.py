"""The client commands (`apply`, `get`, `delete`): requests to a meshdns API, as kumactl's."""

from __future__ import annotations

import json
import os
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx
import yaml

from meshdns.cli.group import fail, table
from meshdns.cli.options import settings_options
from meshdns.settings import ENV_PREFIX, Settings
from registry.documents import DocumentError, load_yaml_documents
from registry.errors import InvalidResource
from registry.schema import parse_resource, resource_name_problem
from registry.schema.vips import VIRTUAL_IPS, parse_virtual_ips

APPLY_RETRY = 60.0  # seconds `apply` retries a 503 for


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """Where the client commands send requests, and as whom."""

    url: str
    token: str | None = None
    ca_cert: str | None = None


def read_token_file(path: str) -> str:
    """The bearer token in the file at `path`; a missing or empty file ends the command."""
    try:
        token = Path(path).read_text().strip()
    except OSError as error:
        fail(f"cannot read the token file {path}: {error.strerror}")
    if not token:
        fail(f"the token file {path} is empty")
    return token


def api_target(settings: Settings) -> ApiTarget:
    """--api, and the token of --token-file (else $MESHDNS_TOKEN) and --ca-cert."""
    if settings.token_file:
        token: str | None = read_token_file(settings.token_file)
    else:
        token = os.environ.get(f"{ENV_PREFIX}_TOKEN")
    return ApiTarget(settings.api, token or None, settings.ca_cert)


def api_path(template: str, **names: str) -> str:
    """`template` with each {name} filled in: refused unless it is a name a resource can
    have, and percent-quoted, so no name can walk the API's paths (``..``, ``a/b``)."""
    for key, value in names.items():
        problem = resource_name_problem(value)
        if problem is not None:
            fail(f"{key} {value!r} is not a resource name: it {problem}")
    return template.format(**{key: quote(value, safe="") for key, value in names.items()})


def api_request(
    api: ApiTarget, method: str, path: str, *, retry_for: float = 0.0, **kwargs: Any
) -> Any:
    """The JSON answer to one request; an unreachable API or an error answer ends the
    command with what the API said. With `retry_for`, a 503 (the registry's database
    unavailable, as in a failover) is retried with backoff for that many seconds: only
    for requests that may be repeated (an `apply` writes the same whole state again)."""
    deadline = time.monotonic() + retry_for
    delay = 0.5
    while True:
        response = _send(api, method, path, **kwargs)
        if response.status_code != 503 or time.monotonic() + delay > deadline:
            return _answer(response, method, path)
        click.echo(
            f"the meshdns API answered 503 ({_detail(response)}); trying again in {delay:g} s",
            err=True,
        )
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("details") or body.get("title")) if isinstance(body, dict) else ""


def _send(api: ApiTarget, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api.token}"} if api.token else {}
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=api.ca_cert) if api.ca_cert else True
    )
    try:
        response = httpx.request(
            method,
            api.url.rstrip("/") + path,
            timeout=30,
            headers=headers,
            verify=verify,
            **kwargs,
        )
    except httpx.ConnectError as error:
        if isinstance(error.__cause__ or error.__context__, ssl.SSLCertVerificationError) or (
            "CERTIFICATE_VERIFY_FAILED" in str(error)
        ):
            fail(
                f"the meshdns API at {api.url} presented a certificate that does not verify "
                f"({error}); give the CA that signed it with --ca-cert"
            )
        fail(f"cannot reach the meshdns API at {api.url}: {error} (is `meshdns serve` running?)")
    except httpx.HTTPError as error:
        fail(f"cannot reach the meshdns API at {api.url}: {error}")
    return response


def _answer(response: httpx.Response, method: str, path: str) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_error:
        if isinstance(body, dict) and "title" in body:
            lines = [f"{body['title']}: {body.get('details', '')}"]
            lines += [f"  {c['field']}: {c['message']}" for c in body.get("causes") or []]
            fail("\n".join(lines))
        fail(f"{method} {path} answered {response.status_code}: {response.text[:200]}")
    return body


def _read_documents(source: str) -> list[Any]:
    try:
        with click.open_file(source) as stream:
            text = stream.read()
    except OSError as error:
        fail(f"cannot read {source}: {error.strerror}")
    try:
        documents = load_yaml_documents(text)
    except DocumentError as error:
        fail(f"{source} is not valid YAML or JSON; nothing was applied: {error}")
    # A JSON array (or a YAML list) of resources counts as that many documents.
    flat: list[Any] = []
    for document in documents:
        flat.extend(document if isinstance(document, list) else [document])
    if not flat:
        fail(f"{source} holds no resources")
    return flat


def _describe(index: int, document: Any) -> str:
    label = f"document {index + 1}"
    if isinstance(document, dict) and document.get("name"):
        label += f" ({document.get('type', '?')} {document['name']!r})"
    return label


@click.command("apply")
@click.option("-f", "--file", "source", required=True, help="YAML or JSON file, or - for stdin.")
@settings_options("apply")
def apply(source: str, settings: Settings) -> None:
    """Create or update resources: all of them, or none when any is invalid."""
    api = api_target(settings)
    documents = _read_documents(source)
    problems = []
    for index, document in enumerate(documents):
        try:
            if isinstance(document, dict) and document.get("type") == VIRTUAL_IPS:
                parse_virtual_ips(document)  # an export's VIPs (meshdns export)
            else:
                parse_resource(document)
        except InvalidResource as error:
            problems += [
                f"{_describe(index, document)}: {cause.field}: {cause.message}"
                for cause in error.causes
            ]
    if problems:
        fail("nothing was applied:\n" + "\n".join(f"  {line}" for line in problems))
    # Idempotent (the same whole state written again): a 503 is retried for a minute,
    # the time a database failover takes.
    result = api_request(api, "POST", "/apply", json={"items": documents}, retry_for=APPLY_RETRY)
    for item in result["items"]:
        mesh = f' mesh="{item["mesh"]}"' if "mesh" in item else ""
        click.echo(f'Resource type="{item["type"]}"{mesh} name="{item["name"]}" {item["status"]}')


def _all_items(api: ApiTarget, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = api_request(api, "GET", path, params={"size": 1000, "offset": offset})
        items += page["items"]
        if not page.get("next"):
            return items
        offset += 1000


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(timestamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _status(insight: dict[str, Any]) -> str:
    if "online" not in insight:
        return "Static"  # never connected by an agent: no liveness, an endpoint when ready
    return "Online" if insight["online"] else "Offline"


def _dataplane_row(item: dict[str, Any]) -> list[str]:
    """A row from a DataplaneOverview (`dataplanes+insights`), like `kumactl inspect`."""
    dataplane, insight = item["dataplane"], item.get("dataplaneInsight") or {}
    inbounds = dataplane.get("networking", {}).get("inbound", [])
    tags = sorted({f"{k}={v}" for inbound in inbounds for k, v in inbound["tags"].items()})
    return [
        item["mesh"],
        item["name"],
        _status(insight),
        _age(insight.get("connectTime")),
        _age(insight.get("lastSeen")),
        insight.get("origin", "api"),
        dataplane["networking"]["address"],
        " ".join(tags),
        _age(item.get("creationTime")),
    ]


def _vip_of(item: dict[str, Any]) -> str:
    """A service kind's VIP from its status (a MeshExternalService has one, not a list)."""
    status = item.get("status") or {}
    vips = status.get("vips") or ([status["vip"]] if status.get("vip") else [])
    return str(vips[0].get("ip", "")) if vips else ""


def _hostnames_of(item: dict[str, Any]) -> str:
    addresses = (item.get("status") or {}).get("addresses") or []
    return ",".join(str(address.get("hostname", "")) for address in addresses)


def _service_kind_row(item: dict[str, Any]) -> list[str]:
    return [
        item["mesh"],
        item["name"],
        _vip_of(item),
        _hostnames_of(item),
        _age(item.get("creationTime")),
    ]


_SERVICE_KIND_COLUMNS = ["MESH", "NAME", "VIP", "HOSTNAMES", "AGE"]
TABLES: dict[str, tuple[list[str], Any]] = {
    "meshes": (
        ["NAME", "MTLS", "AGE"],
        lambda i: [
            i["name"],
            (i.get("mtls") or {}).get("enabledBackend", "off"),
            _age(i.get("creationTime")),
        ],
    ),
    "dataplanes": (
        [
            "MESH",
            "NAME",
            "STATUS",
            "LAST CONNECTED",
            "LAST SEEN",
            "ORIGIN",
            "ADDRESS",
            "TAGS",
            "AGE",
        ],
        _dataplane_row,
    ),
    "services": (
        ["MESH", "SERVICE", "VIP", "ENDPOINTS", "DATAPLANES", "ENDPOINTS BY ZONE"],
        lambda i: [
            i["mesh"],
            i["name"],
            i["vip"] or "-",
            str(i["endpoints"]),
            str(i["dataplanes"]),
            " ".join(f"{zone}={count}" for zone, count in (i.get("zones") or {}).items()) or "-",
        ],
    ),
    "zones": (
        ["NAME", "STATUS", "ENABLED", "LAST SEEN"],
        lambda i: [
            i["name"],
            i.get("status", "-"),
            "yes" if i.get("enabled", True) else "no",
            _age(i.get("lastSeen")),
        ],
    ),
    "meshservices": (_SERVICE_KIND_COLUMNS, _service_kind_row),
    "meshexternalservices": (_SERVICE_KIND_COLUMNS, _service_kind_row),
    "meshmultizoneservices": (_SERVICE_KIND_COLUMNS, _service_kind_row),
    "meshtrafficpermissions": (
        ["MESH", "NAME", "AGE"],
        lambda i: [i["mesh"], i["name"], _age(i.get("creationTime"))],
    ),
    "hostnamegenerators": (
        ["NAME", "AGE"],
        lambda i: [i["name"], _age(i.get("creationTime"))],
    ),
}
# The kinds listed across the registry, not in one mesh (-m).
_GLOBAL_KINDS = ("meshes", "zones", "hostnamegenerators")


@click.command("get")
@click.argument("kind", type=click.Choice(sorted(TABLES)))
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
)
@settings_options("get")
def get(kind: str, output: str, settings: Settings) -> None:
    """List meshes, dataplanes, services, zones, or Kuma's service model (meshservices,
    meshexternalservices, meshmultizoneservices, hostnamegenerators,
    meshtrafficpermissions)."""
    api, mesh = api_target(settings), settings.mesh
    if kind in _GLOBAL_KINDS:
        path = f"/{kind}"
    else:
        path = api_path("/meshes/{mesh}/", mesh=mesh) + kind
    if kind in ("dataplanes", "zones") and output == "table":
        path += "+insights"  # the table shows status, as `kumactl inspect dataplanes`
    items = _all_items(api, path)
    if output == "json":
        click.echo(json.dumps({"total": len(items), "items": items}, indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump({"total": len(items), "items": items}, sort_keys=False), nl=False)
    else:
        header, row = TABLES[kind]
        click.echo(table(header, [row(item) for item in items]))


# What `delete` takes: each kind's type name and its path (mesh-scoped ones in -m's mesh).
DELETABLE = {
    "mesh": ("Mesh", "/meshes/{name}"),
    "dataplane": ("Dataplane", "/meshes/{mesh}/dataplanes/{name}"),
    "meshservice": ("MeshService", "/meshes/{mesh}/meshservices/{name}"),
    "meshexternalservice": ("MeshExternalService", "/meshes/{mesh}/meshexternalservices/{name}"),
    "meshmultizoneservice": (
        "MeshMultiZoneService",
        "/meshes/{mesh}/meshmultizoneservices/{name}",
    ),
    "meshtrafficpermission": (
        "MeshTrafficPermission",
        "/meshes/{mesh}/meshtrafficpermissions/{name}",
    ),
    "hostnamegenerator": ("HostnameGenerator", "/hostnamegenerators/{name}"),
}


@click.command("delete")
@click.argument("kind", type=click.Choice(list(DELETABLE)))
@click.argument("name")
@settings_options("delete")
def delete(kind: str, name: str, settings: Settings) -> None:
    """Delete a mesh (with everything in it), a dataplane, or a resource of Kuma's
    service model."""
    api = api_target(settings)
    type_name, template = DELETABLE[kind]
    names = {"name": name} | ({"mesh": settings.mesh} if "{mesh}" in template else {})
    api_request(api, "DELETE", api_path(template, **names))
    click.echo(f'deleted {type_name} "{name}"')


COMMANDS = (apply, get, delete)
