"""Journey counters: deltas written by the database, folded into counters now and then.

Every insert or change of a run or a message adds its difference to ``stat_deltas``
(triggers of migration 0010: whoever writes, it is counted, in the writer's own
transaction). Deltas are only ever inserted, so no writer waits on a hot counter row.
:func:`fold` moves them, in batches, into ``stat_counters``, one row per counter;
readers (``engine.analytics.counters``) add the deltas not folded yet, so a count is
exact whenever it is read, and stays cheap however many runs there are.

``journey run`` and ``journey scheduler`` fold every few seconds; any number may run
(on PostgreSQL one folds at a time, the others skip; SQLite has one writer anyway).

Metrics, keyed by journey and version:

=================  ========================================================
``entered``         runs that entered
``status``          runs in ``status`` now (active, completed, exited, ...)
``reached``         runs that reached ``step``
``visits``          visits of ``step``, all runs together
``step_converted``  runs that reached ``step`` and converted
``message``         messages of ``step`` on ``channel`` with an outcome, by
                    ``status`` (sent, delivered, bounced, failed, suppressed,
                    cancelled; ``reason`` only for ``suppressed``). Messages
                    still waiting to send are counted from ``messages``.
``converted``       runs that converted
``unattributed``    conversions without a message sent before them
``first``/``last``  conversions credited to ``channel``, first and last touch
``linear``          conversions credited to ``channel``, one share per touch
=================  ========================================================
"""

from __future__ import annotations

import logging

from sqlalchemy import text

from engine.store.database import Database

log = logging.getLogger("journey.stats")

#: Deltas moved per transaction.
BATCH = 20_000
#: How often the engine and the scheduler fold.
FOLD_EVERY = 5.0
#: The advisory lock a PostgreSQL folder holds (one folds at a time).
FOLD_LOCK = 0x6A6F7572_6E737400 >> 1

KEY = "journey_id, version, metric, step, channel, status, reason"

_PG_FOLD = text(
    f"""
    WITH moved AS (
        DELETE FROM stat_deltas WHERE id IN (
            SELECT id FROM stat_deltas ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED
        )
        RETURNING {KEY}, n
    ), folded AS (
        INSERT INTO stat_counters ({KEY}, n)
        SELECT {KEY}, SUM(n) FROM moved GROUP BY {KEY} ORDER BY {KEY}
        ON CONFLICT ({KEY}) DO UPDATE SET n = stat_counters.n + EXCLUDED.n
        RETURNING 1
    )
    SELECT COUNT(*) FROM moved
    """
)
_SQLITE_LAST = text("SELECT MAX(id) FROM (SELECT id FROM stat_deltas ORDER BY id LIMIT :batch)")
_SQLITE_FOLD = text(
    f"""
    INSERT INTO stat_counters ({KEY}, n)
    SELECT {KEY}, SUM(n) FROM stat_deltas WHERE id <= :last GROUP BY {KEY}
    ON CONFLICT ({KEY}) DO UPDATE SET n = stat_counters.n + excluded.n
    """
)
_SQLITE_DELETE = text("DELETE FROM stat_deltas WHERE id <= :last")


def fold_once(db: Database, batch: int = BATCH) -> int:
    """Fold up to ``batch`` deltas in one transaction; how many were folded (0 also when
    another process is folding)."""
    with db.transaction() as session:
        if db.is_sqlite:
            last = session.scalar(_SQLITE_LAST, {"batch": batch})
            if last is None:
                return 0
            session.execute(_SQLITE_FOLD, {"last": last})
            deleted = session.execute(_SQLITE_DELETE, {"last": last})
            return int(getattr(deleted, "rowcount", 0) or 0)
        locked = session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": FOLD_LOCK})
        if not locked:
            return 0
        return int(session.scalar(_PG_FOLD, {"batch": batch}) or 0)


def fold(db: Database, batch: int = BATCH) -> int:
    """Fold every delta there is now; how many were folded."""
    total = 0
    while True:
        moved = fold_once(db, batch)
        total += moved
        if moved < batch:
            return total
