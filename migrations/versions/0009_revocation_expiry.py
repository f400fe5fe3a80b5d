"""When a revoked token would have expired anyway: past it, its revocation can go.

Revision ID: 0009_revocation_expiry
Revises: 0008_service_model
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_revocation_expiry"
down_revision: str | None = "0008_service_model"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("token_revocations") as table:
        table.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        table.create_index(op.f("ix_token_revocations_expires_at"), ["expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("token_revocations") as table:
        table.drop_index(op.f("ix_token_revocations_expires_at"))
        table.drop_column("expires_at")
