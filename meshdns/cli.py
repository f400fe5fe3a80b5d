"""The `meshdns` command: the server, migrations and a small kumactl-like client."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

import click
import httpx
import yaml

from meshdns import __version__
from meshdns.settings import DEFAULT_API, ENV_PREFIX, Settings, options
from registry.errors import InvalidResource, RegistryError
from registry.schema import parse_resource

api_option = click.option(
    "--api",
    default=DEFAULT_API,
    show_default=True,
    envvar=f"{ENV_PREFIX}_API",
    help="URL of the meshdns API.",
)
mesh_option = click.option(
    "-m", "--mesh", default="default", show_default=True, envvar=f"{ENV_PREFIX}_MESH"
)


def fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@click.group(
    context_settings={"auto_envvar_prefix": ENV_PREFIX, "help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="meshdns")
def main() -> None:
    """DNS-centric service discovery for service meshes."""


def _log_to_stderr(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic narrates every migration context at INFO; only its warnings matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _run(coroutine: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional on other platforms
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


@main.command()
@options(
    "database_url",
    "dns_address",
    "dns_port",
    "api_address",
    "api_port",
    "domain",
    "mode",
    "zone",
    "default_mesh",
    "vip_cidr",
    "vip6_cidr",
    "vip_quarantine",
    "ttl",
    "endpoints_ttl",
    "negative_ttl",
    "allow_recursion",
    "upstream",
    "heartbeat_interval",
    "offline_after",
    "agent_cleanup_delay",
    "offline_gc_age",
    "dns_workers",
    "allow_transfer",
    "notify",
    "loopback_admin",
    "api_tls_cert",
    "api_tls_key",
    "rate_limit",
    "rate_limit_slip",
    "rate_limit_ipv4_prefix",
    "rate_limit_ipv6_prefix",
    "tcp_max_connections",
    "tcp_idle_timeout",
    "log_level",
)
def serve(**given: Any) -> None:
    """Run the registry API and the authoritative DNS server."""
    from meshdns.app import serve as run_server

    settings = Settings.from_options(given)
    _log_to_stderr(settings.log_level)
    try:
        _run(run_server(settings))
    except RegistryError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot listen: {error}")


@main.command()
@options("database_url")
def migrate(**given: Any) -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    from registry.database import upgrade

    settings = Settings.from_options(given)
    try:
        asyncio.run(upgrade(settings.database_url))
    except RegistryError as error:
        fail(str(error))
    click.echo("database is up to date")


@main.command()
@options(
    "zone",
    "zone_database_url",
    "global_database_url",
    "sync_batch",
    "sync_poll_interval",
    "log_level",
)
def sync(**given: Any) -> None:
    """Replicate a zone's registry into the global store and back, until stopped."""
    from meshdns.sync import run_sync

    settings = Settings.from_options(given)
    for name, value in (
        ("--zone", settings.zone),
        ("--zone-database-url", settings.zone_database_url),
        ("--global-database-url", settings.global_database_url),
    ):
        if not value:
            fail(f"sync needs {name}")
    _log_to_stderr(settings.log_level)
    try:
        _run(run_sync(settings))
    except RegistryError as error:
        fail(str(error))


# --- the client commands --------------------------------------------------------------


def _request(api: str, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = httpx.request(method, api.rstrip("/") + path, timeout=30, **kwargs)
    except httpx.HTTPError as error:
        fail(f"cannot reach the meshdns API at {api}: {error} (is `meshdns serve` running?)")
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
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        fail(f"{source} is not valid YAML or JSON: {error}")
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


@main.command()
@click.option("-f", "--file", "source", required=True, help="YAML or JSON file, or - for stdin.")
@api_option
def apply(source: str, api: str) -> None:
    """Create or update resources: all of them, or none when any is invalid."""
    documents = _read_documents(source)
    problems = []
    for index, document in enumerate(documents):
        try:
            parse_resource(document)
        except InvalidResource as error:
            problems += [
                f"{_describe(index, document)}: {cause.field}: {cause.message}"
                for cause in error.causes
            ]
    if problems:
        fail("nothing was applied:\n" + "\n".join(f"  {line}" for line in problems))
    result = _request(api, "POST", "/apply", json={"items": documents})
    for item in result["items"]:
        mesh = f' mesh="{item["mesh"]}"' if "mesh" in item else ""
        click.echo(f'Resource type="{item["type"]}"{mesh} name="{item["name"]}" {item["status"]}')


def _all_items(api: str, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = _request(api, "GET", path, params={"size": 1000, "offset": offset})
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
        ["MESH", "SERVICE", "VIP", "ENDPOINTS", "DATAPLANES"],
        lambda i: [
            i["mesh"],
            i["name"],
            i["vip"] or "-",
            str(i["endpoints"]),
            str(i["dataplanes"]),
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
}


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[col]) for row in [header, *rows]) for col in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


@main.command()
@click.argument("kind", type=click.Choice(sorted(TABLES)))
@mesh_option
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
)
@api_option
def get(kind: str, mesh: str, output: str, api: str) -> None:
    """List meshes, dataplanes, services or zones."""
    path = {"meshes": "/meshes", "zones": "/zones"}.get(kind, f"/meshes/{mesh}/{kind}")
    if kind in ("dataplanes", "zones") and output == "table":
        path += "+insights"  # the table shows status, as `kumactl inspect dataplanes`
    items = _all_items(api, path)
    if output == "json":
        click.echo(json.dumps({"total": len(items), "items": items}, indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump({"total": len(items), "items": items}, sort_keys=False), nl=False)
    else:
        header, row = TABLES[kind]
        click.echo(_table(header, [row(item) for item in items]))


@main.command()
@click.argument("kind", type=click.Choice(["mesh", "dataplane"]))
@click.argument("name")
@mesh_option
@api_option
def delete(kind: str, name: str, mesh: str, api: str) -> None:
    """Delete a mesh (with everything in it) or a dataplane."""
    path = f"/meshes/{name}" if kind == "mesh" else f"/meshes/{mesh}/dataplanes/{name}"
    _request(api, "DELETE", path)
    click.echo(f'deleted {kind.capitalize()} "{name}"')


@main.group()
def dp() -> None:
    """The dataplane agent."""


@dp.command("run")
@click.option(
    "--cp", required=True, envvar=f"{ENV_PREFIX}_CP", help="URL of the control plane API."
)
@click.option(
    "--dataplane-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    envvar=f"{ENV_PREFIX}_DATAPLANE_FILE",
    help="The Dataplane resource (Kuma Universal YAML or JSON).",
)
@click.option(
    "--dns-address",
    default="127.0.0.1",
    show_default=True,
    envvar=f"{ENV_PREFIX}_DP_DNS_ADDRESS",
    help="Address of the local DNS server.",
)
@click.option(
    "--dns-port",
    default=15053,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar=f"{ENV_PREFIX}_DP_DNS_PORT",
    help="Port of the local DNS server (UDP and TCP).",
)
@click.option(
    "--upstream",
    multiple=True,
    envvar=f"{ENV_PREFIX}_UPSTREAM",
    help="Upstream resolver ADDR[:PORT] for other names; default: /etc/resolv.conf's.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
def dp_run(
    cp: str,
    dataplane_file: str,
    dns_address: str,
    dns_port: int,
    upstream: tuple[str, ...],
    log_level: str,
) -> None:
    """Register a dataplane, keep it alive and serve its mesh's DNS locally."""
    from pathlib import Path

    from meshdns.agent import AgentError, AgentSettings, run_agent

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = AgentSettings(cp, Path(dataplane_file), dns_address, dns_port, upstream)
    try:
        _run(run_agent(settings))
    except AgentError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot listen: {error}")


@main.command("export-zone")
@mesh_option
@options(
    "database_url",
    "domain",
    "zone",
    "dns_address",
    "ttl",
    "endpoints_ttl",
    "negative_ttl",
)
def export_zone(mesh: str, **given: Any) -> None:
    """Print a mesh's DNS zone as an RFC 1035 zone file (for NSD, Knot, BIND).

    Reads the registry as a DNS server does (read-only); the SOA serial is its revision.
    """
    from meshdns.zone_export import export_zone as render_zone

    settings = Settings.from_options(given)
    try:
        click.echo(asyncio.run(render_zone(settings, mesh)), nl=False)
    except RegistryError as error:
        fail(str(error))
