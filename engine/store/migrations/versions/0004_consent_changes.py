"""Consent changes: unsubscribes made by link, each a fact of its own.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = 512  # user keys (schema.ID)


def upgrade() -> None:
    op.create_table(
        "consent_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_key", sa.String(ID), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("previous", sa.JSON(), nullable=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_changes")),
    )
    op.create_index(
        op.f("ix_consent_changes_user_key_changed_at"),
        "consent_changes",
        ["user_key", "changed_at"],
    )


def downgrade() -> None:
    op.drop_table("consent_changes")  # dropping a table drops its indexes
