"""Revocations of tokens that have since expired are pruned: an expired token is refused
anyway, so its revocation no longer matters; one whose expiry is unknown stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from registry.auth.tokens import (
    prune_revocations,
    revoke_token,
    token_expiry_of,
    token_id_of,
)
from registry.models import TokenRevocationRow
from tests.auth.conftest import dataplane_token


async def revoked_ids(engine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.scalars(select(TokenRevocationRow.token_id)))


async def test_a_revocation_goes_once_its_token_has_expired(api):
    app = api()
    engine = app.store.engine
    short = await app.issue(dataplane_token("web"), valid_for=timedelta(minutes=5))
    long = await app.issue(dataplane_token("web"), valid_for=timedelta(days=30))
    expiry = token_expiry_of(short)
    assert expiry is not None and expiry - datetime.now(UTC) < timedelta(minutes=6)
    assert token_expiry_of(token_id_of(short)) is None  # an id says nothing of it
    for token in (short, long):
        assert await revoke_token(engine, token_id_of(token), token_expiry_of(token))
    assert await revoke_token(engine, "revoked-by-id")  # its expiry unknown

    assert await prune_revocations(engine, datetime.now(UTC)) == 0  # none expired yet
    assert await prune_revocations(engine, datetime.now(UTC) + timedelta(minutes=10)) == 1
    assert await revoked_ids(engine) == {token_id_of(long), "revoked-by-id"}
    # Still refused (now as expired, had it been used): nothing lost by pruning.
    later = datetime.now(UTC) + timedelta(days=31)
    assert await prune_revocations(engine, later) == 1
    assert await revoked_ids(engine) == {"revoked-by-id"}
