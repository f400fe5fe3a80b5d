"""API tokens: the keys they are signed with, and the revoked ones.

Revision ID: 0007_tokens
Revises: 0006_multizone
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_tokens"
down_revision: str | None = "0006_multizone"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_index(op.f("ix_signing_keys_created_at"), "signing_keys", ["created_at"])
    op.create_table(
        "token_revocations",
        sa.Column("token_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_token_revocations")),
    )


def downgrade() -> None:
    op.drop_table("token_revocations")
    op.drop_index(op.f("ix_signing_keys_created_at"), table_name="signing_keys")
    op.drop_table("signing_keys")
