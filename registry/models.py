"""The registry's tables, declared once; the migrations must build exactly these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Every constraint and index gets its name from here, so migrations never spell one by hand.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

NAME_LENGTH = 253  # Kuma's limit on resource names
ADDRESS_LENGTH = 45  # the longest textual IPv6 address (with an embedded IPv4 tail)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: registry times must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite returns what it was given without an offset; it was UTC on the way in.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = metadata


class MeshRow(Base):
    __tablename__ = "meshes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DataplaneRow(Base):
    __tablename__ = "dataplanes"
    __table_args__ = (UniqueConstraint("mesh_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mesh_id: Mapped[int] = mapped_column(ForeignKey("meshes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # networking.address and advertisedAddress, kept as columns so a snapshot needs no JSON.
    address: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    advertised_address: Mapped[str | None] = mapped_column(String(ADDRESS_LENGTH))
    # The zone it was replicated from (its kuma.io/zone label); None: this registry's own.
    zone: Mapped[str | None] = mapped_column(String(NAME_LENGTH), index=True)
    # Its labels, for MeshService selectors (dataplaneLabels); None when it has none.
    labels: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # transparentProxying's reachableServices and reachableBackends, which narrow the
    # names it may resolve: {"services": [...], "backends": [...]}; None when unset.
    reachable: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboundRow(Base):
    """One inbound of a dataplane, normalised so tag filters and service counts run in SQL."""

    __tablename__ = "dataplane_inbounds"
    __table_args__ = (UniqueConstraint("dataplane_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataplane_id: Mapped[int] = mapped_column(ForeignKey("dataplanes.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # index in networking.inbound
    name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))  # a MeshService targetPort
    service: Mapped[str] = mapped_column(String, index=True)
    address: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))  # inbound.address or networking
    port: Mapped[int] = mapped_column(Integer)
    ready: Mapped[bool] = mapped_column(Boolean)


class InboundTagRow(Base):
    __tablename__ = "dataplane_inbound_tags"
    __table_args__ = (Index(None, "key", "value"),)

    inbound_id: Mapped[int] = mapped_column(
        ForeignKey("dataplane_inbounds.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(String)


# The kind of a legacy service's VIP (a kuma.io/service value); the other kinds are the
# resource types that hold one (MeshService, MeshExternalService, MeshMultiZoneService).
LEGACY_VIP_KIND = "Service"


class VipRow(Base):
    """A service's virtual IP; released rows stay as the quarantine and as the way back.

    ``kind`` says what ``service`` names: a legacy kuma.io/service, or a resource of a
    service kind, each kind with its own range. Not tied to meshes by a foreign key: a VIP
    must outlive its mesh's deletion for the quarantine to hold.
    """

    __tablename__ = "vips"
    __table_args__ = (UniqueConstraint("kind", "mesh", "service"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[int] = mapped_column(BigInteger, unique=True)  # IPv4 as an integer
    # IPv6 fully exploded (fixed width, lower case), so text order is numeric order.
    address6: Mapped[str | None] = mapped_column(String(39), unique=True)
    kind: Mapped[str] = mapped_column(String(32), server_default=LEGACY_VIP_KIND)
    mesh: Mapped[str] = mapped_column(String(NAME_LENGTH))
    service: Mapped[str] = mapped_column(String)
    allocated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class RegistryStateRow(Base):
    """The one row holding the registry revision; every write transaction bumps it."""

    __tablename__ = "registry_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, server_default="0")


class ChangeRow(Base):
    """One committed change to a resource, numbered in commit order: the change feed.

    A deletion is kept as a tombstone (``deleted``), so a reader that follows the feed
    learns of it. ``mesh`` is the mesh of a mesh-scoped resource and the name of a Mesh.
    """

    __tablename__ = "changes"

    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    mesh: Mapped[str] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    deleted: Mapped[bool] = mapped_column(Boolean)
    committed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class DataplaneInsightRow(Base):
    """Liveness of a dataplane that an agent has connected for (Kuma's DataplaneInsight).

    A dataplane without this row was never connected by an agent: it is a static
    registration, always an endpoint when ready. ``origin`` says who created the
    dataplane ("agent" or "api"), which decides how it is cleaned up once offline.
    ``last_seen`` is written in batches, not per heartbeat, and is no feed change; only
    ``online`` flipping is.
    """

    __tablename__ = "dataplane_insights"

    dataplane_id: Mapped[int] = mapped_column(
        ForeignKey("dataplanes.id", ondelete="CASCADE"), primary_key=True
    )
    origin: Mapped[str] = mapped_column(String(16))
    online: Mapped[bool] = mapped_column(Boolean)
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class _ZoneScoped:
    """Columns of a resource named across the registry, kept whole as JSON, with the
    zone it belongs to (None: this registry's own, not replicated)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    zone: Mapped[str | None] = mapped_column(String(NAME_LENGTH), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ZoneIngressRow(_ZoneScoped, Base):
    __tablename__ = "zone_ingresses"


class IngressServiceRow(Base):
    """A service an ingress offers, normalised so VIPs can tell whether it is still offered."""

    __tablename__ = "ingress_services"
    __table_args__ = (Index(None, "mesh", "service"),)

    ingress_id: Mapped[int] = mapped_column(
        ForeignKey("zone_ingresses.id", ondelete="CASCADE"), primary_key=True
    )
    mesh: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    service: Mapped[str] = mapped_column(String, primary_key=True)
    instances: Mapped[int] = mapped_column(Integer)


class ZoneEgressRow(_ZoneScoped, Base):
    __tablename__ = "zone_egresses"


class _MeshScoped:
    """Columns of a mesh-scoped resource kept whole as JSON."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mesh_id: Mapped[int] = mapped_column(ForeignKey("meshes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TrafficPermissionRow(_MeshScoped, Base):
    __tablename__ = "traffic_permissions"
    __table_args__ = (UniqueConstraint("mesh_id", "name"),)


class MeshServiceRow(_MeshScoped, Base):
    __tablename__ = "mesh_services"
    __table_args__ = (UniqueConstraint("mesh_id", "name"),)


class MeshExternalServiceRow(_MeshScoped, Base):
    __tablename__ = "mesh_external_services"
    __table_args__ = (UniqueConstraint("mesh_id", "name"),)


class MeshMultiZoneServiceRow(_MeshScoped, Base):
    __tablename__ = "mesh_multizone_services"
    __table_args__ = (UniqueConstraint("mesh_id", "name"),)


class MeshTrafficPermissionRow(_MeshScoped, Base):
    __tablename__ = "mesh_traffic_permissions"
    __table_args__ = (UniqueConstraint("mesh_id", "name"),)


class HostnameGeneratorRow(Base):
    """A HostnameGenerator: not per mesh."""

    __tablename__ = "hostname_generators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ZoneRow(Base):
    """A zone known to the global control plane. ``last_seen`` is the sync worker's last
    contact (written often, no feed change), from which the zone's status is told."""

    __tablename__ = "zones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SyncCursorRow(Base):
    """How far the sync worker has replicated a source's change feed into this database.

    Written in the same transaction as the rows it covers, so a worker killed at any
    point resumes exactly where the target's state says it is.
    """

    __tablename__ = "sync_cursors"

    source: Mapped[str] = mapped_column(String(NAME_LENGTH + 8), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SigningKeyRow(Base):
    """A key API tokens are signed with (registry/auth/__init__.py). The newest signs; every key
    still here verifies, so rotating is adding one and retiring is deleting one."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    private_key: Mapped[str] = mapped_column(Text)  # PKCS#8 PEM
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class TokenRevocationRow(Base):
    """A revoked token, by its id (the JWT's ``jti``)."""

    __tablename__ = "token_revocations"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the token would have expired (None: revoked by id, unknown): past it, the
    # token is refused anyway, and the revocation is pruned.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
