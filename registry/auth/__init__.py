"""Who may call the API: signed bearer tokens, the keys they are signed with, and the
rules each kind of token is held to (docs/decisions.md, "API authentication").

- Tokens are JWTs signed with Ed25519 (``EdDSA``) keys kept in the registry
  (``signing_keys``). The newest key signs; every key still stored verifies, so rotating
  is adding a key and retiring one is deleting it. A revoked token's id (``jti``) is kept
  in ``token_revocations``.
- Three kinds: ``admin`` (everything); ``dataplane`` (a mesh and a set of
  ``kuma.io/service`` names: it registers, updates and deletes only dataplanes all of
  whose services are in the set, and follows its mesh's DNS records); ``zone`` (a zone
  control plane's dataplanes, ingresses and egresses, only on that zone's control plane).
- Requests from loopback without a token are admin unless ``--no-loopback-admin``; a
  token, when given, always decides.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv6Address, ip_address
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.errors import DatabaseUnavailable, NotFound, RegistryError
from registry.models import SigningKeyRow, TokenRevocationRow
from registry.schema import (
    SERVICE_TAG,
    ZONE_TAG,
    Dataplane,
    Resource,
    ZoneEgress,
    ZoneIngress,
    answered_addresses,
)
from registry.snapshot import IPAddress
from registry.store import Store
from registry.store.database import WRITE_OPTION, map_errors

log = logging.getLogger("meshdns.auth")

ADMIN, DATAPLANE, ZONE = "admin", "dataplane", "zone"
TOKEN_KINDS = (ADMIN, DATAPLANE, ZONE)
ALGORITHM = "EdDSA"
ISSUER = "meshdns"
# Clock difference tolerated between the host that made a token and the API's.
LEEWAY_SECONDS = 30
# How stale the API's copy of keys and revocations may be: a revocation holds for every
# request that starts this long after it was committed.
REFRESH_SECONDS = 1.0
# A token signed by a key the copy does not know makes the copy be read again, at most
# this often (a key just added by `rotate-key` works at once; garbage cannot flood).
UNKNOWN_KEY_REFRESH_SECONDS = 0.1
VERIFIED_CACHE_SIZE = 10_000


class Unauthenticated(RegistryError):
    """The request carries no valid bearer token."""


class Forbidden(RegistryError):
    """The token does not allow this request."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request acts as: an admin, or the holder of a scoped token."""

    kind: str
    mesh: str | None = None
    services: frozenset[str] = frozenset()
    zone: str | None = None
    token_id: str | None = None  # None: loopback admin, or no authentication configured

    @property
    def is_admin(self) -> bool:
        return self.kind == ADMIN

    def __str__(self) -> str:
        if self.kind == DATAPLANE:
            names = ", ".join(sorted(self.services))
            return f'dataplane token for services [{names}] in mesh "{self.mesh}"'
        if self.kind == ZONE:
            return f'zone token for zone "{self.zone}"'
        return "admin"

    def claims(self) -> dict[str, Any]:
        """What a token of this identity says, besides its id and times."""
        claims: dict[str, Any] = {"kind": self.kind}
        if self.kind == DATAPLANE:
            claims |= {"mesh": self.mesh, "services": sorted(self.services)}
        elif self.kind == ZONE:
            claims["zone"] = self.zone
        return claims

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Identity:
        """The identity a verified token's claims describe; Unauthenticated when malformed."""
        kind, token_id = claims.get("kind"), str(claims["jti"])
        if kind == ADMIN:
            return cls(ADMIN, token_id=token_id)
        if kind == DATAPLANE:
            mesh, services = claims.get("mesh"), claims.get("services")
            if (
                isinstance(mesh, str)
                and isinstance(services, list)
                and services
                and all(isinstance(service, str) for service in services)
            ):
                return cls(DATAPLANE, mesh=mesh, services=frozenset(services), token_id=token_id)
        if kind == ZONE and isinstance(claims.get("zone"), str):
            return cls(ZONE, zone=claims["zone"], token_id=token_id)
        raise Unauthenticated("the token's claims are not those of a meshdns token")


ADMIN_IDENTITY = Identity(ADMIN)


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


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d`` or a sum of them (``1h30m``), as Kuma writes them."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(number + unit for number, unit in parts) != text.strip():
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 24h, 7d or 1h30m")
    return timedelta(seconds=sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts))


# --- keys, tokens and revocations in the registry ---------------------------------------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    kid: str
    created_at: datetime
    signing: bool  # the newest: new tokens are signed with it


@dataclass(frozen=True, slots=True)
class IssuedToken:
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


async def revoke_token(engine: AsyncEngine, token_id: str) -> bool:
    """Revoke a token by its id; False when it was already revoked."""
    with map_errors(engine.url):
        async with _writer(engine).begin() as connection:
            known = await connection.scalar(
                select(TokenRevocationRow.token_id).where(TokenRevocationRow.token_id == token_id)
            )
            if known is not None:
                return False
            await connection.execute(
                insert(TokenRevocationRow).values(token_id=token_id, revoked_at=datetime.now(UTC))
            )
    return True


# --- authentication: the API's view of keys and revocations -----------------------------


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


# --- authorization: what each kind of token may do --------------------------------------

# FastAPI route names (the handler's function name, or "put ZoneIngress" for the routes
# registry/api/__init__.py adds per resource). A route in none of these sets is admin-only.
PUBLIC_ROUTES = frozenset({"healthz", "readyz"})
_AGENT_ROUTES = frozenset({"connect", "heartbeat", "disconnect"})
_DATAPLANE_WRITES = frozenset({"put_dataplane", "delete_dataplane", "apply"}) | _AGENT_ROUTES
DATAPLANE_TOKEN_ROUTES = _DATAPLANE_WRITES | {"dns_records"}
ZONE_TOKEN_WRITES = _DATAPLANE_WRITES | {
    f"{verb} {kind}" for verb in ("put", "delete") for kind in ("ZoneIngress", "ZoneEgress")
}
_READS = frozenset({"GET", "HEAD"})

DataplaneKey = tuple[str, str]  # (mesh, name)


def dataplane_services(dataplane: Dataplane) -> frozenset[str]:
    """The services a dataplane serves: its inbounds' and its gateway's."""
    services = set(dataplane.services)
    gateway = dataplane.networking.gateway
    if gateway is not None and SERVICE_TAG in gateway.tags:
        services.add(gateway.tags[SERVICE_TAG])
    return frozenset(services)


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{name}"' for name in sorted(names))


class Guard:
    """Checks what an identity may do on this control plane (mode and zone).

    `known_services` answers a dataplane's services from memory (the follower's view), so
    heartbeats need no database read; without it, or when it does not know, the store is
    asked.
    """

    def __init__(
        self,
        store: Store,
        *,
        mode: str = "standalone",
        zone: str | None = None,
        known_services: Callable[[DataplaneKey], frozenset[str] | None] | None = None,
        meshes_at: Callable[[IPAddress], set[str]] | None = None,
    ) -> None:
        self.store = store
        self.mode = mode
        self.zone = zone
        self._known_services = known_services or (lambda key: None)
        # The meshes of the dataplanes at an address (the follower's view).
        self._meshes_at = meshes_at or (lambda address: set())

    def check_route(
        self, identity: Identity, route: str, method: str, path: str, params: Mapping[str, Any]
    ) -> None:
        """The first gate: which routes a token may reach at all, and in which mesh."""
        if identity.is_admin:
            return
        if identity.kind == ZONE:
            if self.mode != "zone" or self.zone != identity.zone:
                here = f'zone "{self.zone}"' if self.mode == "zone" else f"a {self.mode}"
                raise Forbidden(f"{identity} is not valid on the control plane of {here}")
            if method in _READS or route in ZONE_TOKEN_WRITES:
                return
            raise Forbidden(
                f"{identity} may not {method} {path}: zone tokens write only dataplanes, "
                "zone ingresses and zone egresses"
            )
        if route not in DATAPLANE_TOKEN_ROUTES:
            raise Forbidden(
                f"{identity} may not {method} {path}: dataplane tokens only register their "
                "dataplanes and follow their mesh's DNS records"
            )
        mesh = params.get("mesh")
        if mesh is not None and mesh != identity.mesh:
            raise Forbidden(f'{identity} may not act in mesh "{mesh}"')

    async def check_put(self, identity: Identity, resource: Resource, where: str = "") -> None:
        """May `identity` create or replace `resource` (and whatever it replaces)?"""
        if identity.is_admin:
            return
        refused = await self._put_refusal(identity, resource)
        if refused:
            raise Forbidden(f"{where}{identity} may not {refused}")

    async def check_existing(
        self,
        identity: Identity,
        kind: str,
        mesh: str,
        name: str,
        action: str,
        *,
        fast: bool = False,
    ) -> None:
        """May `identity` `action` (delete, disconnect...) the stored resource? A resource
        that does not exist passes: the handler answers 404. `fast` (heartbeats) may take
        a dataplane's services from memory, which can lag the database by a moment."""
        if identity.is_admin:
            return
        if kind == "Dataplane":
            if identity.kind == DATAPLANE:
                services = await self._stored_services((mesh, name), fast=fast)
                if services is not None and not services <= identity.services:
                    raise Forbidden(
                        f'{identity} may not {action} dataplane "{name}": it serves '
                        f"{_quoted(services - identity.services)}"
                    )
                return
            stored_zone = await self._stored_zone(kind, mesh, name)
        elif identity.kind == ZONE and kind in ("ZoneIngress", "ZoneEgress"):
            stored_zone = await self._stored_zone(kind, mesh, name)
        else:
            raise Forbidden(f"{identity} may not {action} {kind} resources")
        if stored_zone not in (None, identity.zone):
            noun = "dataplane" if kind == "Dataplane" else kind
            raise Forbidden(f'{identity} may not {action} {noun} "{name}" of zone "{stored_zone}"')

    async def _put_refusal(self, identity: Identity, resource: Resource) -> str | None:
        """What a non-admin identity may not do in writing `resource`; None: nothing."""
        kind, name = resource.type, resource.name
        if isinstance(resource, Dataplane):
            label_zone = (resource.labels or {}).get(ZONE_TAG)
            if label_zone is not None and label_zone != self.zone:
                return f'register a dataplane labelled {ZONE_TAG}: "{label_zone}"'
            if identity.kind == ZONE:
                stored_zone = await self._stored_zone(kind, resource.mesh, name)
                if stored_zone not in (None, identity.zone):
                    return f'update dataplane "{name}" of zone "{stored_zone}"'
                return None
            if resource.mesh != identity.mesh:
                return f'register a dataplane in mesh "{resource.mesh}"'
            services = dataplane_services(resource)
            if not services:
                return f'register dataplane "{name}": it serves no {SERVICE_TAG}'
            if not services <= identity.services:
                other = services - identity.services
                noun = "service" if len(other) == 1 else "services"
                return f"register an inbound of {noun} {_quoted(other)}"
            stored = await self._stored_services((resource.mesh, name), fast=False)
            if stored is not None and not stored <= identity.services:
                return f'update dataplane "{name}": it serves {_quoted(stored - identity.services)}'
            return self._address_refusal(resource)
        if identity.kind == ZONE and isinstance(resource, ZoneIngress | ZoneEgress):
            if resource.zone not in (None, identity.zone):
                return f'write {kind} "{name}" of zone "{resource.zone}"'
            stored_zone = await self._stored_zone(kind, "", name)
            if stored_zone not in (None, identity.zone):
                return f'update {kind} "{name}" of zone "{stored_zone}"'
            return None
        return f"write {kind} resources"

    def _address_refusal(self, dataplane: Dataplane) -> str | None:
        """A dataplane token may not register at an address where dataplanes of another
        mesh are: the address would select neither mesh's DNS view any more, changing
        what that mesh's clients are answered (docs/dns.md). Loopback addresses are a
        host's own, shared by whatever runs there, and exempt."""
        for field_name, text in answered_addresses(dataplane):
            address = ip_address(text)
            if address.is_loopback:
                continue
            others = self._meshes_at(address) - {dataplane.mesh}
            if others:
                noun = "mesh" if len(others) == 1 else "meshes"
                return (
                    f"register a dataplane at {text} ({field_name}): dataplanes of {noun} "
                    f"{_quoted(others)} are there"
                )
        return None

    async def _stored_services(self, key: DataplaneKey, *, fast: bool) -> frozenset[str] | None:
        """The stored dataplane's services; None when there is no such dataplane."""
        if fast:
            known = self._known_services(key)
            if known:
                return known
        try:
            stored = await self.store.get_dataplane(*key)
        except NotFound:
            return None
        assert isinstance(stored.resource, Dataplane)
        return dataplane_services(stored.resource)

    async def _stored_zone(self, kind: str, mesh: str, name: str) -> str | None:
        """The zone a stored dataplane, ingress or egress belongs to (None: this one's)."""
        try:
            if kind == "Dataplane":
                stored = await self.store.get_dataplane(mesh, name)
            else:
                stored = await self.store.get_resource(kind, mesh, name)
        except NotFound:
            return None
        resource = stored.resource
        if isinstance(resource, Dataplane):
            return (resource.labels or {}).get(ZONE_TAG)
        return getattr(resource, "zone", None)
