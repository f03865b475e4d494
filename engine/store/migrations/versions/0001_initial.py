"""The initial schema: every table in engine/store/schema.py as of milestone 1.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written out in full, not imported from schema.py, so it keeps meaning what it meant when
later revisions change the models. ``UtcDateTime`` is a Python-side type over
``DateTime(timezone=True)``; ``SeqId`` is BIGINT, plain INTEGER on SQLite (rowid alias).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = 512  # user keys, message ids and refs (schema.ID)


def seq_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("user_key", sa.String(ID), nullable=False),
        sa.Column("traits", sa.JSON(), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("user_key", name=op.f("pk_profiles")),
    )

    op.create_table(
        "identities",
        sa.Column("alias_key", sa.String(ID), nullable=False),
        sa.Column("owner_key", sa.String(ID), nullable=False),
        sa.Column("linked_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("alias_key", name=op.f("pk_identities")),
    )
    op.create_index(op.f("ix_identities_owner_key"), "identities", ["owner_key"])

    op.create_table(
        "events",
        sa.Column("seq", seq_id(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(ID), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(ID), nullable=True),
        sa.Column("anonymous_id", sa.String(ID), nullable=True),
        sa.Column("timestamp", utc(), nullable=False),
        sa.Column("received_at", utc(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("processed_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("message_id", name=op.f("uq_events_message_id")),
    )
    op.create_index(op.f("ix_events_status_seq"), "events", ["status", "seq"])

    op.create_table(
        "deployments",
        sa.Column("id", seq_id(), autoincrement=True, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("journeys", sa.JSON(), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )

    op.create_table(
        "journey_versions",
        sa.Column("journey_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("deployment_id", seq_id(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_journey_versions_deployment_id_deployments"),
        ),
        sa.PrimaryKeyConstraint("journey_id", "version", name=op.f("pk_journey_versions")),
    )

    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("user_key", sa.String(ID), nullable=False),
        sa.Column("journey_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.String(128), nullable=True),
        sa.Column("entered_at", utc(), nullable=False),
        sa.Column("ended_at", utc(), nullable=True),
        sa.Column("converted_at", utc(), nullable=True),
        sa.Column("goal_until", utc(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_user_key_entered_at"), "runs", ["user_key", "entered_at"])

    op.create_table(
        "entries",
        sa.Column("user_key", sa.String(ID), nullable=False),
        sa.Column("journey_id", sa.String(128), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_entered_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("user_key", "journey_id", name=op.f("pk_entries")),
    )

    op.create_table(
        "timers",
        sa.Column("timer_id", sa.String(256), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("user_key", sa.String(ID), nullable=False),
        sa.Column("due_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("timer_id", name=op.f("pk_timers")),
    )
    op.create_index(op.f("ix_timers_user_key"), "timers", ["user_key"])
    op.create_index(op.f("ix_timers_due_at_seq"), "timers", ["due_at", "seq"])

    op.create_table(
        "messages",
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("user_key", sa.String(ID), nullable=False),
        sa.Column("journey_id", sa.String(128), nullable=False),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("send_at", utc(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=True),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("provider_message_id", sa.String(256), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("claimed_until", utc(), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_messages")),
    )
    op.create_index(op.f("ix_messages_run_id"), "messages", ["run_id"])
    op.create_index(op.f("ix_messages_user_key_send_at"), "messages", ["user_key", "send_at"])
    op.create_index(op.f("ix_messages_status_send_at"), "messages", ["status", "send_at"])

    op.create_table(
        "dead_letters",
        sa.Column("id", seq_id(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(ID), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("replayed_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("messages")  # dropping a table drops its indexes
    op.drop_table("timers")
    op.drop_table("entries")
    op.drop_table("runs")
    op.drop_table("journey_versions")
    op.drop_table("deployments")
    op.drop_table("events")
    op.drop_table("identities")
    op.drop_table("profiles")
