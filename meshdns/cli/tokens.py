"""`meshdns token`: API tokens and the keys that sign them, administered on the database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from meshdns.cli.group import fail, table
from meshdns.cli.options import settings_options
from meshdns.settings import Settings, split_list
from registry.errors import RegistryError


@click.group()
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
@settings_options("token generate")
def token_generate(
    kind: str,
    mesh: str | None,
    service: tuple[str, ...],
    zone_name: str | None,
    valid_for: str,
    settings: Settings,
) -> None:
    """Print a new signed token (its id, to revoke it, goes to stderr)."""
    from registry.auth.identity import Identity
    from registry.auth.tokens import issue_token, parse_duration

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
@settings_options("token revoke")
def token_revoke(token_or_id: str, settings: Settings) -> None:
    """Revoke a token, by its id or the token itself; control planes refuse it within 1 s."""
    from registry.auth.tokens import revoke_token, token_expiry_of, token_id_of

    try:
        token_id = token_id_of(token_or_id)
    except RegistryError as error:
        fail(str(error))
    # Given whole, the token says when it expires: its revocation is pruned after that.
    expires_at = token_expiry_of(token_or_id)
    new = _on_registry(
        settings.database_url, lambda engine: revoke_token(engine, token_id, expires_at)
    )
    click.echo(f"revoked token {token_id}" if new else f"token {token_id} was already revoked")


@token.command("rotate-key")
@settings_options("token rotate-key")
def token_rotate_key(settings: Settings) -> None:
    """Add a signing key: new tokens are signed with it, older tokens stay valid."""
    from registry.auth.tokens import add_signing_key

    kid = _on_registry(settings.database_url, add_signing_key)
    click.echo(f"signing key {kid} added; new tokens are signed with it")


@token.command("keys")
@settings_options("token keys")
def token_keys(settings: Settings) -> None:
    """List the signing keys: every one verifies, the newest signs."""
    from registry.auth.tokens import list_signing_keys

    keys = _on_registry(settings.database_url, list_signing_keys)
    rows = [
        [key.kid, key.created_at.isoformat(timespec="seconds"), "yes" if key.signing else "-"]
        for key in keys
    ]
    click.echo(table(["KID", "CREATED", "SIGNING"], rows))


@token.command("delete-key")
@click.argument("kid")
@settings_options("token delete-key")
def token_delete_key(kid: str, settings: Settings) -> None:
    """Retire a signing key: every token it signed stops being valid (within 1 s)."""
    from registry.auth.tokens import delete_signing_key

    _on_registry(settings.database_url, lambda engine: delete_signing_key(engine, kid))
    click.echo(f"signing key {kid} deleted")
