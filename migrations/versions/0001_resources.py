"""Meshes and dataplanes, with dataplane inbounds and their tags normalised.

Revision ID: 0001_resources
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_resources"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "meshes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meshes")),
        sa.UniqueConstraint("name", name=op.f("uq_meshes_name")),
    )
    op.create_table(
        "dataplanes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mesh_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.Column("advertised_address", sa.String(length=45), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mesh_id"],
            ["meshes.id"],
            name=op.f("fk_dataplanes_mesh_id_meshes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataplanes")),
        sa.UniqueConstraint("mesh_id", "name", name=op.f("uq_dataplanes_mesh_id_name")),
    )
    op.create_table(
        "dataplane_inbounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataplane_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataplane_id"],
            ["dataplanes.id"],
            name=op.f("fk_dataplane_inbounds_dataplane_id_dataplanes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataplane_inbounds")),
        sa.UniqueConstraint(
            "dataplane_id", "position", name=op.f("uq_dataplane_inbounds_dataplane_id_position")
        ),
    )
    op.create_index(
        op.f("ix_dataplane_inbounds_service"), "dataplane_inbounds", ["service"], unique=False
    )
    op.create_table(
        "dataplane_inbound_tags",
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["dataplane_inbounds.id"],
            name=op.f("fk_dataplane_inbound_tags_inbound_id_dataplane_inbounds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("inbound_id", "key", name=op.f("pk_dataplane_inbound_tags")),
    )
    op.create_index(
        op.f("ix_dataplane_inbound_tags_key_value"),
        "dataplane_inbound_tags",
        ["key", "value"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dataplane_inbound_tags_key_value"), table_name="dataplane_inbound_tags")
    op.drop_table("dataplane_inbound_tags")
    op.drop_index(op.f("ix_dataplane_inbounds_service"), table_name="dataplane_inbounds")
    op.drop_table("dataplane_inbounds")
    op.drop_table("dataplanes")
    op.drop_table("meshes")
