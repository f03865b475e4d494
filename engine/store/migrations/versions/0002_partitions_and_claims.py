"""Partitions of users, per-user input time, and owned outbox claims.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

- ``partitions``: 1024 rows, locked to claim the work of their users.
- ``events.user_key`` / ``events.partition``: the key an event is routed by and its
  partition; pending events are indexed by them (a partial index).
- ``timers.partition``: the partition of the timer's user.
- ``profiles.input_at``: the time of the latest input applied to the user.
- ``messages.claimed_by``: the token of the dispatcher whose claim it is.

Existing rows are filled in: the partition is ``crc32(key) % 1024``, written out here so
this revision keeps meaning what it meant if the code's hash ever changes.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = 512
PARTITIONS = 1024
PENDING = sa.text("status = 'pending'")


def _partition(key: str) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % PARTITIONS


def _fill_events(bind: sa.Connection) -> None:
    events = sa.table(
        "events",
        sa.column("seq", sa.BigInteger()),
        sa.column("user_id", sa.String()),
        sa.column("anonymous_id", sa.String()),
        sa.column("user_key", sa.String()),
        sa.column("partition", sa.Integer()),
    )
    rows = bind.execute(sa.select(events.c.seq, events.c.user_id, events.c.anonymous_id))
    updates = []
    for seq, user_id, anonymous_id in rows:
        key = f"user:{user_id}" if user_id is not None else f"anon:{anonymous_id}"
        updates.append({"b_seq": seq, "b_key": key, "b_partition": _partition(key)})
    if updates:
        bind.execute(
            events.update()
            .where(events.c.seq == sa.bindparam("b_seq"))
            .values(user_key=sa.bindparam("b_key"), partition=sa.bindparam("b_partition")),
            updates,
        )


def _fill_timers(bind: sa.Connection) -> None:
    timers = sa.table(
        "timers",
        sa.column("timer_id", sa.String()),
        sa.column("user_key", sa.String()),
        sa.column("partition", sa.Integer()),
    )
    rows = bind.execute(sa.select(timers.c.timer_id, timers.c.user_key))
    updates = [{"b_id": tid, "b_partition": _partition(key)} for tid, key in rows]
    if updates:
        bind.execute(
            timers.update()
            .where(timers.c.timer_id == sa.bindparam("b_id"))
            .values(partition=sa.bindparam("b_partition")),
            updates,
        )


def upgrade() -> None:
    bind = op.get_bind()
    partitions = op.create_table(
        "partitions",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partitions")),
    )
    op.bulk_insert(partitions, [{"id": number} for number in range(PARTITIONS)])

    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("user_key", sa.String(ID), nullable=True))
        batch.add_column(sa.Column("partition", sa.Integer(), nullable=True))
    _fill_events(bind)
    with op.batch_alter_table("events") as batch:
        batch.alter_column("user_key", existing_type=sa.String(ID), nullable=False)
        batch.alter_column("partition", existing_type=sa.Integer(), nullable=False)
        batch.drop_index("ix_events_status_seq")
    op.create_index(
        "ix_events_pending",
        "events",
        ["partition", "user_key", "received_at", "seq"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )

    with op.batch_alter_table("timers") as batch:
        batch.add_column(sa.Column("partition", sa.Integer(), nullable=True))
    _fill_timers(bind)
    with op.batch_alter_table("timers") as batch:
        batch.alter_column("partition", existing_type=sa.Integer(), nullable=False)
    op.create_index(op.f("ix_timers_partition_due_at"), "timers", ["partition", "due_at"])

    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("input_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("claimed_by")
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("input_at")
    op.drop_index(op.f("ix_timers_partition_due_at"), table_name="timers")
    with op.batch_alter_table("timers") as batch:
        batch.drop_column("partition")
    op.drop_index("ix_events_pending", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("partition")
        batch.drop_column("user_key")
        batch.create_index("ix_events_status_seq", ["status", "seq"])
    op.drop_table("partitions")
