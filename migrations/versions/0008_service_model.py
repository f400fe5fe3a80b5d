"""Kuma's current service model: MeshServices and their kin, HostnameGenerators,
MeshTrafficPermissions; VIPs by kind; what selectors and reachability read of dataplanes.

Revision ID: 0008_service_model
Revises: 0007_tokens
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_service_model"
down_revision: str | None = "0007_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MESH_SCOPED = (
    "mesh_services",
    "mesh_external_services",
    "mesh_multizone_services",
    "mesh_traffic_permissions",
)


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _mesh_scoped(table: str) -> None:
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mesh_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        *_times(),
        sa.ForeignKeyConstraint(
            ["mesh_id"], ["meshes.id"], name=op.f(f"fk_{table}_mesh_id_meshes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("mesh_id", "name", name=op.f(f"uq_{table}_mesh_id_name")),
    )


def upgrade() -> None:
    for table in _MESH_SCOPED:
        _mesh_scoped(table)
    op.create_table(
        "hostname_generators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hostname_generators")),
        sa.UniqueConstraint("name", name=op.f("uq_hostname_generators_name")),
    )
    # Every VIP so far is a legacy service's.
    with op.batch_alter_table("vips") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=32), server_default="Service", nullable=False)
        )
        batch.drop_constraint(op.f("uq_vips_mesh_service"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_vips_kind_mesh_service"), ["kind", "mesh", "service"]
        )
    with op.batch_alter_table("dataplanes") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("reachable", sa.JSON(), nullable=True))
    with op.batch_alter_table("dataplane_inbounds") as batch:
        batch.add_column(sa.Column("name", sa.String(length=253), nullable=True))
    _backfill_dataplanes()


def _backfill_dataplanes() -> None:
    """Fill the new columns of the dataplanes already stored, from their specs."""
    bind = op.get_bind()
    dataplanes = sa.table(
        "dataplanes",
        sa.column("id", sa.Integer),
        sa.column("spec", sa.JSON),
        sa.column("labels", sa.JSON),
        sa.column("reachable", sa.JSON),
    )
    inbounds = sa.table(
        "dataplane_inbounds",
        sa.column("dataplane_id", sa.Integer),
        sa.column("position", sa.Integer),
        sa.column("name", sa.String),
    )
    rows = bind.execute(sa.select(dataplanes.c.id, dataplanes.c.spec)).all()
    for dataplane_id, spec in rows:
        spec = spec or {}
        networking = spec.get("networking") or {}
        proxying = networking.get("transparentProxying") or {}
        reachable = {
            key: proxying[field]
            for key, field in (("services", "reachableServices"), ("backends", "reachableBackends"))
            if proxying.get(field) is not None
        }
        if spec.get("labels") or reachable:
            bind.execute(
                sa.update(dataplanes)
                .where(dataplanes.c.id == dataplane_id)
                .values(labels=spec.get("labels") or None, reachable=reachable or None)
            )
        for position, inbound in enumerate(networking.get("inbound") or ()):
            if inbound.get("name"):
                bind.execute(
                    sa.update(inbounds)
                    .where(inbounds.c.dataplane_id == dataplane_id, inbounds.c.position == position)
                    .values(name=inbound["name"])
                )


def downgrade() -> None:
    with op.batch_alter_table("dataplane_inbounds") as batch:
        batch.drop_column("name")
    with op.batch_alter_table("dataplanes") as batch:
        batch.drop_column("reachable")
        batch.drop_column("labels")
    # Only legacy VIPs fit the old constraint.
    op.execute("DELETE FROM vips WHERE kind <> 'Service'")
    with op.batch_alter_table("vips") as batch:
        batch.drop_constraint(op.f("uq_vips_kind_mesh_service"), type_="unique")
        batch.create_unique_constraint(op.f("uq_vips_mesh_service"), ["mesh", "service"])
        batch.drop_column("kind")
    op.drop_table("hostname_generators")
    for table in reversed(_MESH_SCOPED):
        op.drop_table(table)
