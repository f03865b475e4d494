"""Journey counters maintained by the database: every change to a run or a message adds
its difference to ``stat_deltas``; ``engine.store.stat_counters.fold`` moves them into
``stat_counters``. Reports read the counters, never a scan of runs (see that module).

The differences are written by triggers, so every writer counts alike (the engine, a
stop, an erasure, a delivery report, a hand-written UPDATE). Deltas are only ever
inserted: no two transactions wait on a counter row. A deleted row is not uncounted
(retention keeps counts), and an erased run still counts as having entered.

On SQLite, a later migration that rebuilds ``runs`` or ``messages`` (``batch_alter_table``
with a change SQLite cannot make in place) drops their triggers: create them again after.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("journey_id", "version", "metric", "step", "channel", "status", "reason")
COLUMNS = ", ".join((*KEY, "n"))
INTO = f"INSERT INTO stat_deltas ({COLUMNS})"

# -- what a run contributes ---------------------------------------------------------------

#: A run's outcome: entered once; one run in its status now.
RUN_ENTERED = f"""{INTO} VALUES
    (NEW.journey_id, NEW.version, 'entered', '', '', '', '', 1),
    (NEW.journey_id, NEW.version, 'status', '', '', NEW.status, '', 1)"""
RUN_STATUS = f"""{INTO} VALUES
    (OLD.journey_id, OLD.version, 'status', '', '', OLD.status, '', -1),
    (NEW.journey_id, NEW.version, 'status', '', '', NEW.status, '', 1)"""

#: Steps: visits added, steps first reached, and (for a converted run) steps counted
#: as converted: all it reached when it converts now, else those it reaches now.
#: ``{new}``/``{old}`` are the visits (key, value) of the row after and before.
_NEW_V = "CAST(v.value AS INTEGER)"
_OLD_V = "COALESCE(CAST(o.value AS INTEGER), 0)"
RUN_STEPS = [
    f"""{INTO} SELECT NEW.journey_id, NEW.version, 'visits', v.key, '', '', '', {_NEW_V} - {_OLD_V}
    FROM {{new}} v LEFT JOIN {{old}} o ON o.key = v.key WHERE {_NEW_V} <> {_OLD_V}""",
    f"""{INTO} SELECT NEW.journey_id, NEW.version, 'reached', v.key, '', '', '', 1
    FROM {{new}} v LEFT JOIN {{old}} o ON o.key = v.key WHERE {_NEW_V} > 0 AND {_OLD_V} = 0""",
    f"""{INTO} SELECT NEW.journey_id, NEW.version, 'step_converted', v.key, '', '', '', 1
    FROM {{new}} v LEFT JOIN {{old}} o ON o.key = v.key
    WHERE NEW.converted_at IS NOT NULL AND {_NEW_V} > 0
      AND ({{old_converted}} IS NULL OR {_OLD_V} = 0)""",
]

#: A conversion, credited to the channels of the messages the run was sent before it.
#: The run's messages are found by run id alone, then filtered: the LIMIT keeps a planner
#: from combining other indexes (on status) it has no statistics to judge yet.
_RUN_MESSAGES = (
    "(SELECT channel, status, send_at, created_at, message_id FROM messages "
    "WHERE run_id = NEW.run_id LIMIT 1000000)"
)
_TOUCH = "{m}.status IN ('sent', 'delivered', 'bounced') AND {m}.send_at <= NEW.converted_at"
_ORDER = "m.send_at {d}, m.created_at {d}, m.message_id {d}"
RUN_CONVERTED = [
    f"{INTO} VALUES (NEW.journey_id, NEW.version, 'converted', '', '', '', '', 1)",
    f"""{INTO} SELECT NEW.journey_id, NEW.version, 'unattributed', '', '', '', '', 1
    WHERE NOT EXISTS (SELECT 1 FROM {_RUN_MESSAGES} m WHERE {_TOUCH.format(m="m")})""",
    *(
        f"""{INTO} SELECT NEW.journey_id, NEW.version, '{metric}', '', t.channel, '', '', 1
        FROM (SELECT m.channel FROM {_RUN_MESSAGES} m WHERE {_TOUCH.format(m="m")}
              ORDER BY {_ORDER.format(d=direction)} LIMIT 1) t"""
        for metric, direction in (("first", "ASC"), ("last", "DESC"))
    ),
    f"""{INTO} SELECT NEW.journey_id, NEW.version, 'linear', '', m.channel, '', '',
        1.0 * COUNT(*) / (SELECT COUNT(*) FROM {_RUN_MESSAGES} t WHERE {_TOUCH.format(m="t")})
    FROM {_RUN_MESSAGES} m WHERE {_TOUCH.format(m="m")} GROUP BY m.channel""",
]

# -- what a message contributes -----------------------------------------------------------

#: A message is counted once it has an outcome: messages still waiting to be sent
#: (scheduled, pending, sending) are few and change often, so a report counts them from
#: the messages table instead. Only a suppression's reason is kept (a failure's error
#: text would make a counter per error).
WAITING = "('scheduled', 'pending', 'sending')"
_REASON = "CASE WHEN {r}.status = 'suppressed' THEN COALESCE({r}.reason, '') ELSE '' END"
_VERSION = (
    "COALESCE({r}.version, (SELECT runs.version FROM runs WHERE runs.run_id = {r}.run_id), '')"
)


def _message_row(r: str, n: int) -> str:
    return (
        f"SELECT {r}.journey_id, {_VERSION.format(r=r)}, 'message', {r}.step, {r}.channel, "
        f"{r}.status, {_REASON.format(r=r)}, {n} WHERE {r}.status NOT IN {WAITING}"
    )


MESSAGE_ADDED = f"{INTO} {_message_row('NEW', 1)}"
MESSAGE_CHANGED = f"{INTO} {_message_row('OLD', -1)} UNION ALL {_message_row('NEW', 1)}"
MESSAGE_COUNTS_CHANGED = (
    f"(OLD.status <> NEW.status OR {_REASON.format(r='OLD')} <> {_REASON.format(r='NEW')}) "
    f"AND NOT (OLD.status IN {WAITING} AND NEW.status IN {WAITING})"
)


# -- the triggers -------------------------------------------------------------------------


def _visits(dialect: str, row: str | None) -> str:
    """The (key, value) rows of a run row's visits (``row`` None: none)."""
    if dialect == "postgresql":
        return (
            f"json_each_text(({row}.state)::json -> 'visits')"
            if row
            else ("json_each_text('{}'::json)")
        )
    return f"json_each({row}.state, '$.visits')" if row else "json_each('{}')"


def _visits_changed(dialect: str) -> str:
    if dialect == "postgresql":
        visits = "(({row}.state)::json -> 'visits')::text"
        return f"{visits.format(row='OLD')} IS DISTINCT FROM {visits.format(row='NEW')}"
    return "json_extract(OLD.state, '$.visits') IS NOT json_extract(NEW.state, '$.visits')"


def _steps(dialect: str, insert: bool) -> list[str]:
    fill = {
        "new": _visits(dialect, "NEW"),
        "old": _visits(dialect, None if insert else "OLD"),
        "old_converted": "NULL" if insert else "OLD.converted_at",
    }
    return [statement.format(**fill) for statement in RUN_STEPS]


def triggers(dialect: str) -> list[tuple[str, str, str, str | None, list[str]]]:
    """(name, table, event, condition, statements) of every counting trigger."""
    converted_now = "NEW.converted_at IS NOT NULL AND OLD.converted_at IS NULL"
    return [
        ("stat_runs_insert", "runs", "INSERT", None, [RUN_ENTERED, *_steps(dialect, True)]),
        ("stat_runs_converted_insert", "runs", "INSERT", "NEW.converted_at IS NOT NULL",
         RUN_CONVERTED),
        ("stat_runs_status", "runs", "UPDATE OF status", "OLD.status <> NEW.status",
         [RUN_STATUS]),
        ("stat_runs_steps", "runs", "UPDATE OF state, converted_at",
         f"({_visits_changed(dialect)}) OR ({converted_now})", _steps(dialect, False)),
        ("stat_runs_converted", "runs", "UPDATE OF converted_at", converted_now, RUN_CONVERTED),
        ("stat_messages_insert", "messages", "INSERT", f"NEW.status NOT IN {WAITING}",
         [MESSAGE_ADDED]),
        ("stat_messages_update", "messages", "UPDATE OF status, reason", MESSAGE_COUNTS_CHANGED,
         [MESSAGE_CHANGED]),
    ]  # fmt: skip


def _create_triggers(dialect: str) -> None:
    for name, table, event, condition, statements in triggers(dialect):
        body = ";\n".join(statements) + ";"
        if dialect == "postgresql":
            # The condition is the trigger's WHEN: the function is not even called without it.
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n{body}\nRETURN NULL;\nEND $$"
            )
            when = f" WHEN ({condition})" if condition else ""
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when} "
                f"EXECUTE FUNCTION {name}()"
            )
        else:
            when = f" WHEN {condition}" if condition else ""
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when} "
                f"BEGIN\n{body}\nEND"
            )


def _drop_triggers(dialect: str) -> None:
    for name, table, _, _, _ in triggers(dialect):
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def _key_columns() -> list[sa.Column[str]]:
    return [
        sa.Column("journey_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    ]


def _backfill() -> None:
    """Count what is there already, exactly as the triggers count: every message, then
    every run (a conversion is credited to the messages before it), taken out and put
    back in the same transaction, so the insert triggers see each row once."""
    op.execute(
        "UPDATE messages SET version = "
        "(SELECT runs.version FROM runs WHERE runs.run_id = messages.run_id)"
    )
    for table in ("messages", "runs"):
        op.execute(f"CREATE TEMPORARY TABLE stat_backfill AS SELECT * FROM {table}")
        op.execute(f"DELETE FROM {table}")
        op.execute(f"INSERT INTO {table} SELECT * FROM stat_backfill")
        op.execute("DROP TABLE stat_backfill")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "stat_deltas",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        *_key_columns(),
        sa.Column("n", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stat_deltas")),
    )
    if dialect == "postgresql":
        # A queue table: rows come and go every few seconds. Vacuumed early, so reads
        # (which scan what is not folded yet) never wade through dead rows for long.
        op.execute(
            "ALTER TABLE stat_deltas SET (autovacuum_vacuum_scale_factor = 0, "
            "autovacuum_vacuum_threshold = 20000, autovacuum_vacuum_cost_delay = 0)"
        )
    op.create_table(
        "stat_counters",
        *_key_columns(),
        sa.Column("n", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name=op.f("pk_stat_counters")),
    )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("version", sa.String(64), nullable=True))
    op.create_index(
        "ix_runs_journey_id_goal_until",
        "runs",
        ["journey_id", "goal_until"],
        postgresql_where=sa.text("goal_until IS NOT NULL"),
        sqlite_where=sa.text("goal_until IS NOT NULL"),
    )
    _create_triggers(dialect)
    _backfill()


def downgrade() -> None:
    _drop_triggers(op.get_bind().dialect.name)
    op.drop_index("ix_runs_journey_id_goal_until", table_name="runs")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("version")
    op.drop_table("stat_counters")
    op.drop_table("stat_deltas")
