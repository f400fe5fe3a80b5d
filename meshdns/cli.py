"""The `meshdns` command: the server, migrations and a small kumactl-like client."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import click
import httpx
import yaml

from meshdns import __version__
from meshdns.logs import configure_logging
from meshdns.settings import DEFAULT_API, ENV_PREFIX, Settings, options
from registry.documents import DocumentError, load_yaml_documents
from registry.errors import InvalidResource, RegistryError
from registry.schema import parse_resource, resource_name_problem

R = TypeVar("R")

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
token_file_option = click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    envvar=f"{ENV_PREFIX}_TOKEN_FILE",
    help="File holding the bearer token for the API (`meshdns token generate`); "
    f"else ${ENV_PREFIX}_TOKEN, else none (loopback is admin by default).",
)
ca_cert_option = click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False),
    envvar=f"{ENV_PREFIX}_CA_CERT",
    help="PEM CA certificate(s) to verify an https API with (default: the system's).",
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
    "resolver_address",
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
    "log_format",
)
def serve(**given: Any) -> None:
    """Run the registry API and the authoritative DNS server."""
    from meshdns.app import serve as run_server

    settings = Settings.from_options(given)
    if settings.api_tls_cert and settings.api_tls_key:
        # Said here, with the files' names, rather than as "the API could not listen".
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.api_tls_cert, settings.api_tls_key)
        except (OSError, ssl.SSLError) as error:
            fail(
                f"cannot use --api-tls-cert {settings.api_tls_cert} with --api-tls-key "
                f"{settings.api_tls_key}: {error}"
            )
    configure_logging(settings.log_level, settings.log_format)
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
    from registry.store.database import upgrade

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
    "metrics_port",
    "metrics_address",
    "log_level",
    "log_format",
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
    configure_logging(settings.log_level, settings.log_format)
    try:
        _run(run_sync(settings))
    except RegistryError as error:
        fail(str(error))


# --- API tokens -------------------------------------------------------------------------


@main.group()
def token() -> None:
    """API tokens and the keys that sign them.

    These commands work on the registry database itself (--database-url): access to it
    is the admin credential, as kumactl needs an admin to generate tokens.
    """


def _on_registry(url: str, action: Callable[[Any], Any]) -> Any:
    """Run `action(engine)` against a migrated registry; errors end the command."""
    from sqlalchemy.engine import make_url

    from registry.store.database import check_schema_current, create_engine, upgrade

    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and not (parsed.database and Path(parsed.database).exists()):
        fail(f"no registry at {url}: start `meshdns serve` on it (or `meshdns migrate`) first")

    async def run() -> Any:
        # As `serve` does: SQLite is brought up to date, any other database must be.
        await (upgrade(url) if sqlite else check_schema_current(url))
        engine = create_engine(url)
        try:
            return await action(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except RegistryError as error:
        fail(str(error))


@token.command("generate")
@click.option("--type", "kind", required=True, type=click.Choice(["admin", "dataplane", "zone"]))
@click.option("--mesh", help="dataplane: the mesh its dataplanes are in.  [default: default]")
@click.option(
    "--service",
    multiple=True,
    help="dataplane: a kuma.io/service its dataplanes may serve; repeat or comma-separate.",
)
@click.option("--zone", "zone_name", help="zone: the zone whose control plane it writes to.")
@click.option(
    "--valid-for",
    default="24h",
    show_default=True,
    help="How long the token is valid: 90s, 30m, 24h, 7d, 1h30m...",
)
@options("database_url")
def token_generate(
    kind: str,
    mesh: str | None,
    service: tuple[str, ...],
    zone_name: str | None,
    valid_for: str,
    **given: Any,
) -> None:
    """Print a new signed token (its id, to revoke it, goes to stderr)."""
    from meshdns.settings import split_list
    from registry.auth import Identity, issue_token, parse_duration

    try:
        duration = parse_duration(valid_for)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--valid-for") from None
    services = frozenset(split_list(service))
    if kind == "dataplane" and not services:
        fail("a dataplane token needs --service NAME (the kuma.io/service names it may serve)")
    if kind == "zone" and not zone_name:
        fail("a zone token needs --zone NAME")
    if kind != "dataplane" and (mesh or services):
        fail("--mesh and --service are for dataplane tokens")
    if kind != "zone" and zone_name:
        fail("--zone is for zone tokens")
    identity = Identity(
        kind,
        mesh=(mesh or "default") if kind == "dataplane" else None,
        services=services,
        zone=zone_name,
    )
    settings = Settings.from_options(given)
    issued = _on_registry(
        settings.database_url, lambda engine: issue_token(engine, identity, duration)
    )
    click.echo(issued.token)
    click.echo(
        f"token id {issued.token_id} ({identity}), signed with key {issued.kid}, "
        f"valid until {issued.expires_at.isoformat()}",
        err=True,
    )


@token.command("revoke")
@click.argument("token_or_id")
@options("database_url")
def token_revoke(token_or_id: str, **given: Any) -> None:
    """Revoke a token, by its id or the token itself; control planes refuse it within 1 s."""
    from registry.auth import revoke_token, token_id_of

    try:
        token_id = token_id_of(token_or_id)
    except RegistryError as error:
        fail(str(error))
    settings = Settings.from_options(given)
    new = _on_registry(settings.database_url, lambda engine: revoke_token(engine, token_id))
    click.echo(f"revoked token {token_id}" if new else f"token {token_id} was already revoked")


@token.command("rotate-key")
@options("database_url")
def token_rotate_key(**given: Any) -> None:
    """Add a signing key: new tokens are signed with it, older tokens stay valid."""
    from registry.auth import add_signing_key

    settings = Settings.from_options(given)
    kid = _on_registry(settings.database_url, add_signing_key)
    click.echo(f"signing key {kid} added; new tokens are signed with it")


@token.command("keys")
@options("database_url")
def token_keys(**given: Any) -> None:
    """List the signing keys: every one verifies, the newest signs."""
    from registry.auth import list_signing_keys

    settings = Settings.from_options(given)
    keys = _on_registry(settings.database_url, list_signing_keys)
    rows = [
        [key.kid, key.created_at.isoformat(timespec="seconds"), "yes" if key.signing else "-"]
        for key in keys
    ]
    click.echo(_table(["KID", "CREATED", "SIGNING"], rows))


@token.command("delete-key")
@click.argument("kid")
@options("database_url")
def token_delete_key(kid: str, **given: Any) -> None:
    """Retire a signing key: every token it signed stops being valid (within 1 s)."""
    from registry.auth import delete_signing_key

    settings = Settings.from_options(given)
    _on_registry(settings.database_url, lambda engine: delete_signing_key(engine, kid))
    click.echo(f"signing key {kid} deleted")


# --- the client commands --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """Where the client commands send requests, and as whom."""

    url: str
    token: str | None = None
    ca_cert: str | None = None


def read_token_file(path: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as error:
        fail(f"cannot read the token file {path}: {error.strerror}")
    if not token:
        fail(f"the token file {path} is empty")
    return token


def api_options(command: Callable[..., R]) -> Callable[..., R]:
    """--api, --token-file and --ca-cert, handed to the command as one `api` ApiTarget."""

    @functools.wraps(command)
    def run(*args: Any, api: str, token_file: str | None, ca_cert: str | None, **kw: Any) -> R:
        token = read_token_file(token_file) if token_file else os.environ.get(f"{ENV_PREFIX}_TOKEN")
        return command(*args, api=ApiTarget(api, token or None, ca_cert), **kw)

    return api_option(token_file_option(ca_cert_option(run)))


def api_path(template: str, **names: str) -> str:
    """`template` with each {name} filled in: refused unless it is a name a resource can
    have, and percent-quoted, so no name can walk the API's paths (``..``, ``a/b``)."""
    for key, value in names.items():
        problem = resource_name_problem(value)
        if problem is not None:
            fail(f"{key} {value!r} is not a resource name: it {problem}")
    return template.format(**{key: quote(value, safe="") for key, value in names.items()})


def _request(api: ApiTarget, method: str, path: str, **kwargs: Any) -> Any:
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
    except httpx.HTTPError as error:
        fail(f"cannot reach the meshdns API at {api.url}: {error} (is `meshdns serve` running?)")
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


@main.command()
@click.option("-f", "--file", "source", required=True, help="YAML or JSON file, or - for stdin.")
@api_options
def apply(source: str, api: ApiTarget) -> None:
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


def _all_items(api: ApiTarget, path: str) -> list[dict[str, Any]]:
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
@api_options
def get(kind: str, mesh: str, output: str, api: ApiTarget) -> None:
    """List meshes, dataplanes, services or zones."""
    if kind in ("meshes", "zones"):
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
        click.echo(_table(header, [row(item) for item in items]))


@main.command()
@click.argument("kind", type=click.Choice(["mesh", "dataplane"]))
@click.argument("name")
@mesh_option
@api_options
def delete(kind: str, name: str, mesh: str, api: ApiTarget) -> None:
    """Delete a mesh (with everything in it) or a dataplane."""
    if kind == "mesh":
        path = api_path("/meshes/{name}", name=name)
    else:
        path = api_path("/meshes/{mesh}/dataplanes/{name}", mesh=mesh, name=name)
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
    "--token-file",
    type=click.Path(exists=True, dir_okay=False),
    envvar=f"{ENV_PREFIX}_TOKEN_FILE",
    help="File holding a dataplane token (`meshdns token generate --type dataplane`); "
    "read again when the control plane answers 401, so it can be renewed in place.",
)
@ca_cert_option
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="Log lines as text, or as one JSON object each.",
)
def dp_run(
    cp: str,
    dataplane_file: str,
    dns_address: str,
    dns_port: int,
    upstream: tuple[str, ...],
    token_file: str | None,
    ca_cert: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Register a dataplane, keep it alive and serve its mesh's DNS locally."""
    from meshdns.agent import AgentError, AgentSettings, run_agent

    configure_logging(log_level, log_format)
    settings = AgentSettings(
        cp,
        Path(dataplane_file),
        dns_address,
        dns_port,
        upstream,
        token_file=Path(token_file) if token_file else None,
        ca_cert=Path(ca_cert) if ca_cert else None,
    )
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
