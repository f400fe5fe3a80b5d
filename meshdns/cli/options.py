"""Click options made from the settings declarations (meshdns/settings.py).

A command takes the options whose declarations name it, and receives their values as
one ``settings: Settings``; the options it does not take keep their defaults there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import Field
from typing import Any, TypeVar

import click

from meshdns.settings import SETTINGS_FIELDS, OptionSpec, Settings, envvar

R = TypeVar("R")


def _spec(setting: Field[Any]) -> OptionSpec:
    spec: OptionSpec = setting.metadata["option"]
    return spec


def _flag(setting: Field[Any]) -> str:
    return _spec(setting).flag or "--" + setting.name.replace("_", "-")


def _parameter(setting: Field[Any]) -> str:
    # Named after its flag (`dp run`'s --dns-port is dns_port), as click names options:
    # the name also makes click's MESHDNS_<COMMAND>_<NAME> fallback variable.
    return _flag(setting).split("/")[0].lstrip("-").replace("-", "_")


def _default_text(default: Any) -> str:
    if default is None or default == ():
        return ""
    if isinstance(default, tuple):
        return f"  [default: {','.join(default)}]"
    return f"  [default: {default}]"


def _click_option(setting: Field[Any]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    spec = _spec(setting)
    declarations = [_flag(setting), *([spec.short] if spec.short else [])]
    # No click default: an option not given comes as None and the Settings default holds.
    # (A required one takes none at all, so that click says it is missing.)
    default = {} if spec.required else {"default": None}
    return click.option(
        *declarations,
        _parameter(setting),
        **default,
        type=spec.type,
        multiple=spec.multiple,
        required=spec.required,
        envvar=envvar(setting.name),
        show_envvar=True,
        help=f"{spec.help}{_default_text(setting.default)}",
    )


def settings_options(command: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Add the options `command` takes; the command gets their values as `settings`."""
    taken = [s for s in SETTINGS_FIELDS.values() if command in _spec(s).commands]

    def decorate(function: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(function)
        def with_settings(*args: Any, **kwargs: Any) -> R:
            given = {setting.name: kwargs.pop(_parameter(setting)) for setting in taken}
            return function(*args, settings=Settings.from_options(given), **kwargs)

        decorated: Callable[..., R] = with_settings
        for setting in reversed(taken):
            decorated = _click_option(setting)(decorated)
        return decorated

    return decorate
