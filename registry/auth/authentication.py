"""Who a request is: loopback admin, or the identity of a valid bearer token, checked
against the API's copy of the registry's keys and revocations.

Requests from loopback without a token are admin unless ``--no-loopback-admin``; a
token, when given, always decides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv6Address, ip_address

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.auth.identity import ADMIN_IDENTITY, Identity, Unauthenticated
from registry.auth.tokens import ALGORITHM, ISSUER
from registry.errors import DatabaseUnavailable
from registry.models import SigningKeyRow, TokenRevocationRow
from registry.store.database import map_errors

log = logging.getLogger("meshdns.auth")

# Clock difference tolerated between the host that made a token and the API's.
LEEWAY_SECONDS = 30
# How stale the API's copy of keys and revocations may be: a revocation holds for every
# request that starts this long after it was committed.
REFRESH_SECONDS = 1.0
# A token signed by a key the copy does not know makes the copy be read again, at most
# this often (a key just added by `rotate-key` works at once; garbage cannot flood).
UNKNOWN_KEY_REFRESH_SECONDS = 0.1
VERIFIED_CACHE_SIZE = 10_000


def is_loopback(host: str | None) -> bool:
    """Whether a client address is loopback (an IPv4-mapped 127.x counts)."""
    if not host:
        return False
    try:
        address = ip_address(host)
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(slots=True)
class _Trust:
    """The keys and revocations as last read, with when."""

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    revoked: frozenset[str] = frozenset()
    read_at: float = float("-inf")


class Authenticator:
    """Tells who a request acts as, from its client address and Authorization header.

    Keys and revocations are read from the registry at most every `refresh_seconds`, by
    the first request after that; a refresh that fails (database down) keeps the copy.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        loopback_admin: bool = True,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.engine = engine
        self.loopback_admin = loopback_admin
        self.refresh_seconds = refresh_seconds
        self._trust: _Trust | None = None
        self._refreshing: asyncio.Task[_Trust] | None = None
        # token -> (identity, kid, expiry): signatures are checked once per token.
        self._verified: dict[str, tuple[Identity, str, float]] = {}

    async def identify(self, client: str | None, authorization: str | None) -> Identity:
        if authorization is None:
            if self.loopback_admin and is_loopback(client):
                return ADMIN_IDENTITY
            raise Unauthenticated(
                "this API needs a bearer token (Authorization: Bearer <token>); "
                "`meshdns token generate` makes one"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be `Bearer <token>`")
        return await self.verify(token.strip())

    async def verify(self, token: str) -> Identity:
        """The identity of a valid token; Unauthenticated for any other."""
        trust = await self._current()
        cached = self._verified.get(token)
        if cached is not None:
            identity, kid, expires = cached
            if kid not in trust.keys:
                raise Unauthenticated(f"the token's signing key {kid!r} has been retired")
        else:
            identity, kid, expires = await self._check_signature(token, trust)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = (identity, kid, expires)
            trust = self._trust or trust
        if time.time() > expires + LEEWAY_SECONDS:
            expired = datetime.fromtimestamp(expires, UTC).isoformat()
            raise Unauthenticated(f"the token expired at {expired}")
        if identity.token_id in trust.revoked:
            raise Unauthenticated(f'the token "{identity.token_id}" has been revoked')
        return identity

    async def _check_signature(self, token: str, trust: _Trust) -> tuple[Identity, str, float]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise Unauthenticated("the bearer token is not a JWT") from None
        if not isinstance(kid, str):
            raise Unauthenticated("the token names no signing key (kid)")
        key = trust.keys.get(kid)
        if key is None and time.monotonic() - trust.read_at > UNKNOWN_KEY_REFRESH_SECONDS:
            trust = await self._current(force=True)
            key = trust.keys.get(kid)
        if key is None:
            raise Unauthenticated(
                f"the token was signed by key {kid[:64]!r}, which this control plane does not "
                "have (retired, or another registry's)"
            )
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "jti", "iat", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"the token is not valid: {error}") from None
        return Identity.from_claims(claims), kid, float(claims["exp"])

    async def _current(self, *, force: bool = False) -> _Trust:
        trust = self._trust
        if trust is not None and not force:
            if time.monotonic() - trust.read_at < self.refresh_seconds:
                return trust
        # One read at a time; every request waiting for a refresh shares it.
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._read())
        try:
            return await asyncio.shield(self._refreshing)
        except DatabaseUnavailable as error:
            if trust is None:
                raise
            log.warning("keeping the last keys and revocations read: %s", error.message)
            trust.read_at = time.monotonic()  # try again after the interval, not per request
            return trust

    async def _read(self) -> _Trust:
        with map_errors(self.engine.url):
            async with self.engine.connect() as connection:
                keys = (
                    await connection.execute(select(SigningKeyRow.kid, SigningKeyRow.private_key))
                ).all()
                revoked = frozenset(await connection.scalars(select(TokenRevocationRow.token_id)))
        public = {}
        for kid, pem in keys:
            private = load_pem_private_key(pem.encode(), None)
            assert isinstance(private, Ed25519PrivateKey)
            public[kid] = private.public_key()
        self._trust = _Trust(public, revoked, time.monotonic())
        return self._trust
