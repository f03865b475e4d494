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
RUN_STATUS = f"""{INTO}
    SELECT OLD.journey_id, OLD.version, 'status', '', '', OLD.status, '', -1
    WHERE OLD.status <> NEW.status
    UNION ALL
    SELECT NEW.journey_id, NEW.version, 'status', '', '', NEW.status, '', 1
    WHERE OLD.status <> NEW.status"""

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
_TOUCH = (
    "{m}.run_id = NEW.run_id AND {m}.status IN ('sent', 'delivered', 'bounced') "
    "AND {m}.send_at <= NEW.converted_at"
)
_NOW = "NEW.converted_at IS NOT NULL AND {old_converted} IS NULL"
_ORDER = "m.send_at {d}, m.created_at {d}, m.message_id {d}"
RUN_CONVERTED = [
    f"{INTO} SELECT NEW.journey_id, NEW.version, 'converted', '', '', '', '', 1 WHERE {_NOW}",
    f"""{INTO} SELECT NEW.journey_id, NEW.version, 'unattributed', '', '', '', '', 1
    WHERE {_NOW} AND NOT EXISTS (SELECT 1 FROM messages m WHERE {_TOUCH.format(m="m")})""",
    *(
        f"""{INTO} SELECT NEW.journey_id, NEW.version, '{metric}', '', t.channel, '', '', 1
        FROM (SELECT m.channel FROM messages m WHERE {_TOUCH.format(m="m")}
              ORDER BY {_ORDER.format(d=direction)} LIMIT 1) t
        WHERE {_NOW}"""
        for metric, direction in (("first", "ASC"), ("last", "DESC"))
    ),
    f"""{INTO} SELECT NEW.journey_id, NEW.version, 'linear', '', m.channel, '', '',
        1.0 * COUNT(*) / (SELECT COUNT(*) FROM messages t WHERE {_TOUCH.format(m="t")})
    FROM messages m WHERE {_TOUCH.format(m="m")} AND {_NOW} GROUP BY m.channel""",
]

# -- what a message contributes -----------------------------------------------------------

#: Scheduled, pending and sending are one outcome (waiting) to a report; only a
#: suppression's reason is kept (a retry's error text would make a counter per error).
_STATUS = (
    "CASE WHEN {r}.status IN ('scheduled', 'pending', 'sending') THEN 'pending' ELSE {r}.status END"
)
_REASON = "CASE WHEN {r}.status = 'suppressed' THEN COALESCE({r}.reason, '') ELSE '' END"
_VERSION = (
    "COALESCE({r}.version, (SELECT runs.version FROM runs WHERE runs.run_id = {r}.run_id), '')"
)


def _message_row(r: str, n: int) -> str:
    return (
        f"SELECT {r}.journey_id, {_VERSION.format(r=r)}, 'message', {r}.step, {r}.channel, "
        f"{_STATUS.format(r=r)}, {_REASON.format(r=r)}, {n}"
    )


MESSAGE_ADDED = f"{INTO} {_message_row('NEW', 1)}"
_CHANGED = (
    f"({_STATUS.format(r='OLD')} <> {_STATUS.format(r='NEW')} "
    f"OR {_REASON.format(r='OLD')} <> {_REASON.format(r='NEW')})"
)
MESSAGE_CHANGED = (
    f"{INTO} {_message_row('OLD', -1)} WHERE {_CHANGED} "
    f"UNION ALL {_message_row('NEW', 1)} WHERE {_CHANGED}"
)


def _run_statements(op_name: str, dialect: str) -> list[str]:
    if dialect == "postgresql":
        each = "json_each_text(({r}.state)::json -> 'visits')"
        empty = "json_each_text('{}'::json)"
    else:
        each = "json_each({r}.state, '$.visits')"
        empty = "json_each('{}')"
    insert = op_name == "INSERT"
    fill = {
        "new": each.format(r="NEW"),
        "old": empty if insert else each.format(r="OLD"),
        "old_converted": "NULL" if insert else "OLD.converted_at",
    }
    first = RUN_ENTERED if insert else RUN_STATUS
    return [first, *(s.format(**fill) for s in (*RUN_STEPS, *RUN_CONVERTED))]


def _message_statements(op_name: str) -> list[str]:
    return [MESSAGE_ADDED] if op_name == "INSERT" else [MESSAGE_CHANGED]


TRIGGERS = {
    # table: (columns whose update counts, statements by operation)
    "runs": ("status, state, converted_at", _run_statements),
    "messages": ("status, reason", lambda op_name, dialect: _message_statements(op_name)),
}


def _create_triggers(dialect: str) -> None:
    for table, (columns, statements) in TRIGGERS.items():
        for op_name in ("INSERT", "UPDATE"):
            name = f"stat_{table}_{op_name.lower()}"
            when = (
                f"AFTER INSERT ON {table}"
                if op_name == "INSERT"
                else (f"AFTER UPDATE OF {columns} ON {table}")
            )
            body = ";\n".join(statements(op_name, dialect)) + ";"
            if dialect == "postgresql":
                op.execute(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                    f"BEGIN\n{body}\nRETURN NULL;\nEND $$"
                )
                op.execute(f"CREATE TRIGGER {name} {when} FOR EACH ROW EXECUTE FUNCTION {name}()")
            else:
                op.execute(f"CREATE TRIGGER {name} {when} FOR EACH ROW BEGIN\n{body}\nEND")


def _drop_triggers(dialect: str) -> None:
    for table in TRIGGERS:
        for op_name in ("insert", "update"):
            name = f"stat_{table}_{op_name}"
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
