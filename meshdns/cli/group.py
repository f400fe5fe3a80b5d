"""The `meshdns` group, and what its commands share: how they fail and run a coroutine."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import click

from meshdns import __version__
from meshdns.settings import ENV_PREFIX


def fail(message: str) -> NoReturn:
    """End the command with `message` on standard error and exit status 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived command's coroutine on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional on other platforms
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


def table(header: list[str], rows: list[list[str]]) -> str:
    """Rows under a header, in columns as wide as their widest cell."""
    widths = [max(len(row[col]) for row in [header, *rows]) for col in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


@click.group(
    context_settings={"auto_envvar_prefix": ENV_PREFIX, "help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="meshdns")
def main() -> None:
    """DNS-centric service discovery for service meshes."""
