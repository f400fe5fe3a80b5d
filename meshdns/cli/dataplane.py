"""`meshdns dp run`: the dataplane agent beside a workload."""

from __future__ import annotations

import click

from meshdns.cli.group import fail, run
from meshdns.cli.options import settings_options
from meshdns.logs import configure_logging
from meshdns.settings import DP_RUN, Settings


@click.group()
def dp() -> None:
    """The dataplane agent."""


@dp.command("run")
@settings_options(DP_RUN)
def dp_run(settings: Settings) -> None:
    """Register a dataplane, keep it alive and serve its mesh's DNS locally."""
    from meshdns.agent import AgentError, run_agent
    from meshdns.wiring import agent_settings

    configure_logging(settings.log_level, settings.log_format)
    try:
        run(run_agent(agent_settings(settings)))
    except AgentError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot listen: {error}")
