"""The `meshdns` command: the server, token administration, a small kumactl-like client
and the dataplane agent, each in its own module, gathered here under one group."""

from __future__ import annotations

from meshdns.cli import client, export, server
from meshdns.cli.dataplane import dp
from meshdns.cli.group import fail, main
from meshdns.cli.tokens import token

for command in (*server.COMMANDS, token, *client.COMMANDS, *export.COMMANDS, dp):
    main.add_command(command)

__all__ = ["fail", "main"]
