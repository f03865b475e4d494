"""Data rights: ids of users erased on request (later events under them do not rebuild
the profile); events found by user (an export, an erasure, a timeline); when an event's
payload was purged after the retention period.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "forgotten",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dropped", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_forgotten")),
    )
    op.create_index("ix_events_user_key", "events", ["user_key"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("purged_at")
    op.drop_index("ix_events_user_key", table_name="events")
    op.drop_table("forgotten")
