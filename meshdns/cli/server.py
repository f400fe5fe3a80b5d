"""The server commands: `serve`, `migrate`, `sync` and `export-zone`."""

from __future__ import annotations

import asyncio
import ssl

import click

from meshdns.cli.group import fail, run
from meshdns.cli.options import settings_options
from meshdns.logs import configure_logging
from meshdns.settings import EXPORT_ZONE, MIGRATE, SERVE, SYNC, Settings
from registry.errors import RegistryError


@click.command(SERVE)
@settings_options(SERVE)
def serve(settings: Settings) -> None:
    """Run the registry API and the authoritative DNS server."""
    from meshdns.app import serve as run_server

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
        run(run_server(settings))
    except RegistryError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot listen: {error}")


@click.command(MIGRATE)
@settings_options(MIGRATE)
def migrate(settings: Settings) -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    from registry.store.database import current_revision, newest_revision, upgrade

    async def migrate_database() -> tuple[str | None, str]:
        before = await current_revision(settings.database_url)
        await upgrade(settings.database_url)
        return before, newest_revision()

    try:
        before, newest = asyncio.run(migrate_database())
    except RegistryError as error:
        fail(str(error))
    if before == newest:
        click.echo(f"database is up to date (schema revision {newest}); nothing to do")
    elif before is None:
        click.echo(f"database created at schema revision {newest}")
    else:
        click.echo(f"database migrated from schema revision {before} to {newest}")


@click.command(SYNC)
@settings_options(SYNC)
def sync(settings: Settings) -> None:
    """Replicate a zone's registry into the global store and back, until stopped."""
    from meshdns.sync import run_sync

    for name, value in (
        ("--zone", settings.zone),
        ("--zone-database-url", settings.zone_database_url),
        ("--global-database-url", settings.global_database_url),
    ):
        if not value:
            fail(f"sync needs {name}")
    configure_logging(settings.log_level, settings.log_format)
    try:
        run(run_sync(settings))
    except RegistryError as error:
        fail(str(error))


@click.command(EXPORT_ZONE)
@settings_options(EXPORT_ZONE)
def export_zone(settings: Settings) -> None:
    """Print a mesh's DNS zone as an RFC 1035 zone file (for NSD, Knot, BIND).

    Reads the registry as a DNS server does (read-only); the SOA serial is its revision.
    """
    from meshdns.zone_export import export_zone as render_zone

    try:
        click.echo(asyncio.run(render_zone(settings, settings.mesh)), nl=False)
    except RegistryError as error:
        fail(str(error))


COMMANDS = (serve, migrate, sync, export_zone)
