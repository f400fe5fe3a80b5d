"""Signed bearer tokens and the keys they are signed with, kept in the registry.

Tokens are JWTs signed with Ed25519 (``EdDSA``) keys kept in ``signing_keys``. The
newest key signs; every key still stored verifies, so rotating is adding a key and
retiring one is deleting it. A revoked token's id (``jti``) is kept in
``token_revocations`` (docs/decisions.md, "API authentication").
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.auth.identity import Identity, Unauthenticated
from registry.errors import NotFound
from registry.models import SigningKeyRow, TokenRevocationRow
from registry.store.database import WRITE_OPTION, map_errors

ALGORITHM = "EdDSA"
ISSUER = "meshdns"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d`` or a sum of them (``1h30m``), as Kuma writes them."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(number + unit for number, unit in parts) != text.strip():
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 24h, 7d or 1h30m")
    return timedelta(seconds=sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts))


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A signing key as `meshdns token keys` lists it."""

    kid: str
    created_at: datetime
    signing: bool  # the newest: new tokens are signed with it


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just signed: the token, its id (to revoke it), its key and its expiry."""

    token: str
    token_id: str
    kid: str
    expires_at: datetime


def _writer(engine: AsyncEngine) -> AsyncEngine:
    # SQLite takes its write lock at BEGIN (registry/store/database.py explains why).
    return engine.execution_options(**{WRITE_OPTION: True})


async def add_signing_key(engine: AsyncEngine) -> str:
    """Make a new Ed25519 key, which signs from now on; its key id."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    kid = secrets.token_hex(8)
    with map_errors(engine.url):
        async with _writer(engine).begin() as connection:
            await connection.execute(
                insert(SigningKeyRow).values(
                    kid=kid, algorithm=ALGORITHM, private_key=pem, created_at=datetime.now(UTC)
                )
            )
    return kid


async def _newest_key(engine: AsyncEngine) -> tuple[str, str] | None:
    with map_errors(engine.url):
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    select(SigningKeyRow.kid, SigningKeyRow.private_key)
                    .order_by(SigningKeyRow.created_at.desc(), SigningKeyRow.kid.desc())
                    .limit(1)
                )
            ).one_or_none()
    return None if row is None else (row.kid, row.private_key)


async def list_signing_keys(engine: AsyncEngine) -> list[KeyInfo]:
    """Every key that verifies, oldest first; the last one signs."""
    with map_errors(engine.url):
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(SigningKeyRow.kid, SigningKeyRow.created_at).order_by(
                        SigningKeyRow.created_at, SigningKeyRow.kid
                    )
                )
            ).all()
    return [
        KeyInfo(row.kid, row.created_at, signing=index == len(rows) - 1)
        for index, row in enumerate(rows)
    ]


async def delete_signing_key(engine: AsyncEngine, kid: str) -> None:
    """Retire a key: every token it signed stops being valid."""
    with map_errors(engine.url):
        async with _writer(engine).begin() as connection:
            deleted = await connection.execute(
                delete(SigningKeyRow).where(SigningKeyRow.kid == kid)
            )
    if deleted.rowcount == 0:
        raise NotFound(f'signing key "{kid}" not found; `meshdns token keys` lists them')


async def issue_token(
    engine: AsyncEngine,
    identity: Identity,
    valid_for: timedelta,
    *,
    now: datetime | None = None,
) -> IssuedToken:
    """Sign a token for `identity` with the newest key (made now if there is none)."""
    newest = await _newest_key(engine)
    if newest is None:
        await add_signing_key(engine)
        newest = await _newest_key(engine)
        assert newest is not None
    kid, pem = newest
    private = load_pem_private_key(pem.encode(), None)
    assert isinstance(private, Ed25519PrivateKey)
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    expires = issued + valid_for
    token_id = secrets.token_hex(16)
    claims = {
        "iss": ISSUER,
        "jti": token_id,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        **identity.claims(),
    }
    token = jwt.encode(claims, private, ALGORITHM, {"kid": kid})
    return IssuedToken(token, token_id, kid, expires)


def token_id_of(token_or_id: str) -> str:
    """The id to revoke: given as is, or read (unverified) from a whole token."""
    if token_or_id.count(".") != 2:
        return token_or_id.strip()
    try:
        claims = jwt.decode(token_or_id.strip(), options={"verify_signature": False})
    except jwt.InvalidTokenError as error:
        raise Unauthenticated(f"not a token or a token id: {error}") from None
    if "jti" not in claims:
        raise Unauthenticated("the token has no id (jti)")
    return str(claims["jti"])


def token_expiry_of(token_or_id: str) -> datetime | None:
    """When a whole token expires (read unverified); None for an id or no expiry."""
    if token_or_id.count(".") != 2:
        return None
    try:
        claims = jwt.decode(token_or_id.strip(), options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    expiry = claims.get("exp")
    return datetime.fromtimestamp(expiry, UTC) if isinstance(expiry, int | float) else None


async def prune_revocations(engine: AsyncEngine, now: datetime) -> int:
    """Delete the revocations of tokens that have expired since: they can no longer
    matter (an expired token is refused anyway). How many went."""
    with map_errors(engine.url):
        async with _writer(engine).begin() as connection:
            pruned = await connection.execute(
                delete(TokenRevocationRow).where(TokenRevocationRow.expires_at < now)
            )
    return pruned.rowcount or 0


async def revoke_token(
    engine: AsyncEngine, token_id: str, expires_at: datetime | None = None
) -> bool:
    """Revoke a token by its id (`expires_at`: when it expires, if known, so that the
    revocation can be pruned after); False when it was already revoked."""
    with map_errors(engine.url):
        async with _writer(engine).begin() as connection:
            known = await connection.scalar(
                select(TokenRevocationRow.token_id).where(TokenRevocationRow.token_id == token_id)
            )
            if known is not None:
                return False
            await connection.execute(
                insert(TokenRevocationRow).values(
                    token_id=token_id, revoked_at=datetime.now(UTC), expires_at=expires_at
                )
            )
    return True
