"""The change feed: one row per committed change, tombstones included.

Revision ID: 0004_changes
Revises: 0003_registry_state
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_changes"
down_revision: str | None = "0003_registry_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("revision", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("mesh", sa.String(length=253), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_changes")),
    )
    op.create_index(op.f("ix_changes_committed_at"), "changes", ["committed_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_changes_committed_at"), table_name="changes")
    op.drop_table("changes")
