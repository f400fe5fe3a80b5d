"""The single registry_state row holding the registry revision.

Revision ID: 0003_registry_state
Revises: 0002_vips
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_registry_state"
down_revision: str | None = "0002_vips"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    registry_state = op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_registry_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_state")),
    )
    op.bulk_insert(registry_state, [{"id": 1, "revision": 0}])


def downgrade() -> None:
    op.drop_table("registry_state")
