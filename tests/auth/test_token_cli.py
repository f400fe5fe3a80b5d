"""`meshdns token ...` against the registry database: generate, keys, rotation, revocation."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from click.testing import CliRunner, Result

from meshdns.cli import main
from registry.auth.tokens import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("0.5h", timedelta(minutes=30)),
    ],
)
def test_durations_are_written_as_kuma_writes_them(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "1y", "1h 30m", "-1h", "1h30"])
def test_other_durations_are_refused(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_generate_rotate_list_delete_and_revoke(database_url):
    def token(*args: str) -> Result:
        # In this process (the commands' own code; a process each would take seconds).
        return CliRunner().invoke(main, ["token", *args, "--database-url", database_url])

    refused = token("generate", "--type", "dataplane")
    assert refused.exit_code == 1 and "needs --service" in refused.stderr
    assert token("generate", "--type", "admin", "--valid-for", "soon").exit_code == 2

    made = token("generate", "--type", "dataplane", "--service", "web,api", "--valid-for", "2h")
    assert made.exit_code == 0, made.stderr
    claims = jwt.decode(made.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 7200
    assert (claims["kind"], claims["mesh"], claims["services"]) == (
        "dataplane",
        "default",
        ["api", "web"],
    )
    assert claims["jti"] in made.stderr
    first_kid = jwt.get_unverified_header(made.stdout.strip())["kid"]

    rotated = token("rotate-key")
    assert rotated.exit_code == 0, rotated.stderr
    new_kid = rotated.stdout.split()[2]
    zone = token("generate", "--type", "zone", "--zone", "zone-a").stdout.strip()
    assert jwt.get_unverified_header(zone)["kid"] == new_kid
    listed = token("keys").stdout.splitlines()
    assert [line.split()[0] for line in listed] == ["KID", first_kid, new_kid]
    assert listed[2].split()[-1] == "yes" and listed[1].split()[-1] == "-"

    assert token("delete-key", first_kid).exit_code == 0
    assert [line.split()[0] for line in token("keys").stdout.splitlines()] == ["KID", new_kid]
    missing = token("delete-key", first_kid)
    assert missing.exit_code == 1 and "not found" in missing.stderr

    revoked = token("revoke", claims["jti"])
    assert revoked.stdout.strip() == f"revoked token {claims['jti']}"
    assert "already revoked" in token("revoke", made.stdout.strip()).stdout
