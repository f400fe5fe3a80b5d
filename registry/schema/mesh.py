"""Kuma's Mesh: its mTLS setting and the fields stored as given."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from registry.schema.fields import (
    Model,
    NamedResource,
    Text,
)

# Kuma's meshServices.mode values (Disabled, its default, generates no MeshService).
MESH_SERVICES_MODES = ("Disabled", "Everywhere", "ReachableBackends", "Exclusive")


class MTLS(Model):
    enabled_backend: Text | None = Field(None, alias="enabledBackend")
    backends: tuple[dict[str, Any], ...] | None = None
    skip_validation: bool | None = Field(None, alias="skipValidation")


class Mesh(NamedResource):
    type: Literal["Mesh"] = "Mesh"
    mtls: MTLS | None = None
    logging: dict[str, Any] | None = None
    tracing: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    networking: dict[str, Any] | None = None
    routing: dict[str, Any] | None = None
    constraints: dict[str, Any] | None = None
    mesh_services: dict[str, Any] | None = Field(None, alias="meshServices")
    skip_creating_initial_policies: tuple[Text, ...] | None = Field(
        None, alias="skipCreatingInitialPolicies"
    )

    @field_validator("mesh_services")
    @classmethod
    def _known_mode(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Kuma's meshServices takes `mode` alone, one of its four."""
        if value is None:
            return None
        unknown = sorted(set(value) - {"mode"})
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}: meshServices takes mode")
        mode = value.get("mode")
        if mode is not None and mode not in MESH_SERVICES_MODES:
            raise ValueError(f"mode {mode!r} must be one of {', '.join(MESH_SERVICES_MODES)}")
        return value

    @property
    def mtls_enabled(self) -> bool:
        return bool(self.mtls and self.mtls.enabled_backend)
