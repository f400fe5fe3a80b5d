"""Dataplane liveness: one insight row per agent-connected dataplane.

Revision ID: 0005_dataplane_insights
Revises: 0004_changes
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_dataplane_insights"
down_revision: str | None = "0004_changes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dataplane_insights",
        sa.Column("dataplane_id", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataplane_id"],
            ["dataplanes.id"],
            name=op.f("fk_dataplane_insights_dataplane_id_dataplanes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataplane_id", name=op.f("pk_dataplane_insights")),
    )
    op.create_index(op.f("ix_dataplane_insights_last_seen"), "dataplane_insights", ["last_seen"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dataplane_insights_last_seen"), table_name="dataplane_insights")
    op.drop_table("dataplane_insights")
