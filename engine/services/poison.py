"""Counting rounds that die, so an input that kills its worker cannot loop forever.

A worker may die in the middle of applying a round: killed for running past its time
limit, out of memory, a crash in native code. Its transaction rolls back, the work stays
pending, and the next worker would take the same round and die the same way. So each
round first counts an attempt for its partitions, in a transaction of its own, and the
round's own commit clears the count: what is left counts consecutive deaths.

- After ``POISONED`` deaths a partition is applied one input at a time (carefully), and
  each input tried alone is named in the count first.
- An input that was tried alone and killed its worker is set aside as a dead letter the
  next time it comes up, and the rest of the partition goes on.

PostgreSQL only: SQLite has one writer, so a count written beside the round's own
transaction would wait for that very transaction. (An embedded SQLite engine that dies
mid-round dies whole, with the process.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from engine.store.database import Database
from engine.store.schema import ClaimAttempt

#: Consecutive deaths of whole rounds before a partition is applied one input at a time.
POISONED = 2


class WorkerDied(RuntimeError):
    """An input on its own killed the worker that applied it."""


@dataclass(frozen=True, slots=True)
class Before:
    """A partition's count before this attempt."""

    attempts: int = 0
    ref: str | None = None  # the input that was tried alone last, if one was

    @property
    def risky(self) -> bool:
        return self.attempts >= POISONED

    def killed(self, ref: str) -> bool:
        """``ref`` was tried alone, and its worker died."""
        return self.risky and self.ref == ref


class Attempts:
    """The attempt counts of partitions (a no-op on SQLite)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.enabled = not db.is_sqlite

    def begin(self, partitions: Sequence[int], ref: str | None = None) -> dict[int, Before]:
        """Count an attempt now, in a transaction of its own; the counts before it."""
        if not self.enabled or not partitions:
            return {}
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            rows = session.execute(
                select(ClaimAttempt.partition, ClaimAttempt.attempts, ClaimAttempt.ref)
                .where(ClaimAttempt.partition.in_(partitions))
                .with_for_update()
            )
            before = {p: Before(n, r) for p, n, r in rows}
            values = [
                {
                    "partition": p,
                    "attempts": before.get(p, Before()).attempts + 1,
                    "ref": ref,
                    "updated_at": now,
                }
                for p in partitions
            ]
            insert = pg_insert(ClaimAttempt).values(values)
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=[ClaimAttempt.partition],
                    set_={
                        "attempts": insert.excluded.attempts,
                        # A whole round names no input: the one tried alone stays named.
                        "ref": func.coalesce(insert.excluded.ref, ClaimAttempt.ref),
                        "updated_at": insert.excluded.updated_at,
                    },
                )
            )
        return {p: before.get(p, Before()) for p in partitions}

    def forget(self, partitions: Sequence[int]) -> None:
        """The round failed, but its worker lives: no death to count (best effort)."""
        if self.enabled and partitions:
            try:
                with self.db.transaction() as session:
                    self.cleared(session, partitions)
            # Counting is a safeguard; when even this fails the database is away, and a
            # count left behind costs at most one careful round.
            except Exception:
                return

    def cleared(self, session: Session, partitions: Sequence[int]) -> None:
        """The round over ``partitions`` commits with ``session``: nobody died."""
        if self.enabled and partitions:
            session.execute(delete(ClaimAttempt).where(ClaimAttempt.partition.in_(partitions)))

    def still_careful(self, session: Session, partition: int) -> None:
        """An input applied alone commits with ``session``; the partition stays careful
        (what killed workers may come later in it)."""
        if self.enabled:
            row = session.get(ClaimAttempt, partition)
            if row is not None:
                row.attempts, row.ref, row.updated_at = POISONED, None, datetime.now(UTC)
