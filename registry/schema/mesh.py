"""Kuma's Mesh: its mTLS setting and the fields stored as given."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from registry.schema.fields import (
    Model,
    NamedResource,
    Text,
)


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

    @property
    def mtls_enabled(self) -> bool:
        return bool(self.mtls and self.mtls.enabled_backend)
