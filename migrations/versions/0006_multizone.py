"""Multi-zone: zone ingresses and egresses, traffic permissions, zones, sync cursors.

Revision ID: 0006_multizone
Revises: 0005_dataplane_insights
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_multizone"
down_revision: str | None = "0005_dataplane_insights"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _zone_scoped(table: str) -> None:
    """A resource named across the registry, with the zone it came from."""
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("zone", sa.String(length=253), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("name", name=op.f(f"uq_{table}_name")),
    )
    op.create_index(op.f(f"ix_{table}_zone"), table, ["zone"])


def upgrade() -> None:
    with op.batch_alter_table("dataplanes") as batch:
        batch.add_column(sa.Column("zone", sa.String(length=253), nullable=True))
        batch.create_index(op.f("ix_dataplanes_zone"), ["zone"])
    _zone_scoped("zone_ingresses")
    _zone_scoped("zone_egresses")
    op.create_table(
        "ingress_services",
        sa.Column("ingress_id", sa.Integer(), nullable=False),
        sa.Column("mesh", sa.String(length=253), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ingress_id"],
            ["zone_ingresses.id"],
            name=op.f("fk_ingress_services_ingress_id_zone_ingresses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ingress_id", "mesh", "service", name=op.f("pk_ingress_services")),
    )
    op.create_index(
        op.f("ix_ingress_services_mesh_service"), "ingress_services", ["mesh", "service"]
    )
    op.create_table(
        "traffic_permissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mesh_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        *_times(),
        sa.ForeignKeyConstraint(
            ["mesh_id"],
            ["meshes.id"],
            name=op.f("fk_traffic_permissions_mesh_id_meshes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_permissions")),
        sa.UniqueConstraint("mesh_id", "name", name=op.f("uq_traffic_permissions_mesh_id_name")),
    )
    op.create_table(
        "zones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        *_times(),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zones")),
        sa.UniqueConstraint("name", name=op.f("uq_zones_name")),
    )
    op.create_table(
        "sync_cursors",
        sa.Column("source", sa.String(length=261), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_sync_cursors")),
    )


def downgrade() -> None:
    op.drop_table("sync_cursors")
    op.drop_table("zones")
    op.drop_table("traffic_permissions")
    op.drop_index(op.f("ix_ingress_services_mesh_service"), table_name="ingress_services")
    op.drop_table("ingress_services")
    for table in ("zone_egresses", "zone_ingresses"):
        op.drop_index(op.f(f"ix_{table}_zone"), table_name=table)
        op.drop_table(table)
    with op.batch_alter_table("dataplanes") as batch:
        batch.drop_index(op.f("ix_dataplanes_zone"))
        batch.drop_column("zone")
