"""Who a request acts as: an admin, or the holder of a dataplane or zone token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from registry.errors import RegistryError

ADMIN, DATAPLANE, ZONE = "admin", "dataplane", "zone"
TOKEN_KINDS = (ADMIN, DATAPLANE, ZONE)


class Unauthenticated(RegistryError):
    """The request carries no valid bearer token."""


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
