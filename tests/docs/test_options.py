"""The documentation names every option the commands take, with its variable: an option
added to the settings without a line in docs/configuration.md or docs/cli.md fails here."""

from __future__ import annotations

import dataclasses

import pytest

from meshdns.settings import Settings, envvar
from tests.helpers import ROOT

DOCS = (ROOT / "docs" / "configuration.md", ROOT / "docs" / "cli.md")
OPTIONS = [field for field in dataclasses.fields(Settings) if "option" in field.metadata]


@pytest.mark.parametrize("field", OPTIONS, ids=[field.name for field in OPTIONS])
def test_every_option_is_documented_with_its_variable(field):
    spec = field.metadata["option"]
    flags = (spec.flag or "--" + field.name.replace("_", "-")).split("/")
    text = "\n".join(path.read_text() for path in DOCS)
    assert any(f"`{flag.split()[0]}`" in text for flag in flags), f"{flags[0]} is not documented"
    assert envvar(field.name) in text, f"{envvar(field.name)} ({flags[0]}) is not documented"
