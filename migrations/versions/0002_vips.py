"""Virtual IPs per (mesh, service), with the released ones held in quarantine.

Revision ID: 0002_vips
Revises: 0001_resources
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_vips"
down_revision: str | None = "0001_resources"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vips",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.BigInteger(), nullable=False),
        sa.Column("address6", sa.String(length=39), nullable=True),
        sa.Column("mesh", sa.String(length=253), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("allocated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vips")),
        sa.UniqueConstraint("address", name=op.f("uq_vips_address")),
        sa.UniqueConstraint("address6", name=op.f("uq_vips_address6")),
        sa.UniqueConstraint("mesh", "service", name=op.f("uq_vips_mesh_service")),
    )
    op.create_index(op.f("ix_vips_released_at"), "vips", ["released_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_vips_released_at"), table_name="vips")
    op.drop_table("vips")
