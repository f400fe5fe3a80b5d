"""The registry's exceptions: one base, each message saying what was wrong."""

from __future__ import annotations

from dataclasses import dataclass


class RegistryError(Exception):
    """A registry operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or self.__class__.__name__)

    @property
    def message(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Cause:
    """One reason a resource was rejected: the field path and what is wrong with it."""

    field: str
    message: str


class InvalidResource(RegistryError):
    """A resource failed validation."""

    def __init__(self, message: str, causes: list[Cause] | None = None) -> None:
        super().__init__(message)
        self.causes = causes or []

    def __str__(self) -> str:
        if not self.causes:
            return self.message
        details = "; ".join(f"{cause.field}: {cause.message}" for cause in self.causes)
        return f"{self.message}: {details}"


class NotFound(RegistryError):
    """The resource does not exist."""


class Conflict(RegistryError):
    """The resource conflicts with one that exists."""


class DatabaseUnavailable(RegistryError):
    """The registry database cannot be reached; try again when it is back."""


class SchemaOutdated(RegistryError):
    """The database schema is behind this version of meshdns; run `meshdns migrate`."""


class VipPoolExhausted(RegistryError):
    """No virtual IP is free in the configured range; widen --vip-cidr."""


class ReadOnly(RegistryError):
    """This control plane does not take writes of this resource (it is replicated here)."""
