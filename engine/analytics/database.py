"""A :class:`~engine.analytics.source.StatsSource` that counts from the live tables.

Runs give entries, outcomes and conversions (``runs.converted_at``, ``runs.goal_until``);
their ``state`` gives the steps each reached (``visits``); messages give what each step
sent, grouped in the database. Step reach and attribution read the runs of the journey
(attribution only the converted ones, with their messages), in batches: fine for
thousands of runs; reports read the counters the database maintains
(``engine.analytics.counters``), and this source recounts them (``journey stats --recount``).
Every query runs in the session given, so one report reads one snapshot.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from engine.analytics.source import (
    SENT_STATUSES,
    Attribution,
    ConversionTally,
    MessageTally,
    Scope,
    StepTally,
)
from engine.store.schema import Message, Run

BATCH = 1000


def _runs_of(scope: Scope) -> list[ColumnElement[bool]]:
    where = [Run.journey_id == scope.journey_id]
    if scope.version is not None:
        where.append(Run.version == scope.version)
    return where


class DatabaseStats:
    """Counts of one database, read in ``session``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def versions(self, journey_id: str) -> Sequence[str]:
        rows = self.session.execute(
            select(Run.version, func.min(Run.entered_at))
            .where(Run.journey_id == journey_id)
            .group_by(Run.version)
        )
        return [version for version, _ in sorted(rows, key=lambda row: (row[1], row[0]))]

    def entered(self, scope: Scope) -> int:
        count = self.session.scalar(select(func.count()).select_from(Run).where(*_runs_of(scope)))
        return int(count or 0)

    def outcomes(self, scope: Scope) -> Mapping[str, int]:
        rows = self.session.execute(
            select(Run.status, func.count()).where(*_runs_of(scope)).group_by(Run.status)
        )
        return {status: int(count) for status, count in rows}

    def reached(self, scope: Scope) -> Mapping[str, StepTally]:
        runs: Counter[str] = Counter()
        visits: Counter[str] = Counter()
        converted: Counter[str] = Counter()
        rows = self.session.execute(
            select(Run.state["visits"], Run.converted_at)
            .where(*_runs_of(scope))
            .execution_options(yield_per=BATCH)
        )
        for steps, converted_at in rows:
            if not isinstance(steps, dict):
                continue
            for step, times in steps.items():
                runs[step] += 1
                visits[step] += int(times)
                if converted_at is not None:
                    converted[step] += 1
        return {step: StepTally(runs[step], visits[step], converted[step]) for step in runs}

    def messages(self, scope: Scope) -> Iterable[MessageTally]:
        query = (
            select(Message.step, Message.channel, Message.status, Message.reason, func.count())
            .where(Message.journey_id == scope.journey_id)
            .group_by(Message.step, Message.channel, Message.status, Message.reason)
        )
        if scope.version is not None:
            query = query.join(Run, Run.run_id == Message.run_id).where(
                Run.version == scope.version
            )
        return [
            MessageTally(step, channel, status, reason, int(count))
            for step, channel, status, reason, count in self.session.execute(query)
        ]

    def conversions(self, scope: Scope, now: datetime) -> ConversionTally:
        where = _runs_of(scope)
        converted = self.session.scalar(
            select(func.count()).select_from(Run).where(*where, Run.converted_at.is_not(None))
        )
        still_open = self.session.scalar(
            select(func.count())
            .select_from(Run)
            .where(*where, Run.converted_at.is_(None), Run.goal_until >= now)
        )
        return ConversionTally(int(converted or 0), int(still_open or 0))

    def attribution(self, scope: Scope) -> Attribution:
        credit = Attribution()
        converted = self.session.execute(
            select(Run.run_id, Run.converted_at)
            .where(*_runs_of(scope), Run.converted_at.is_not(None))
            .order_by(Run.run_id)
        ).all()
        for start in range(0, len(converted), BATCH):
            batch: dict[str, Any] = dict(converted[start : start + BATCH])
            touches: dict[str, list[str]] = defaultdict(list)
            rows = self.session.execute(
                select(Message.run_id, Message.channel, Message.send_at)
                .where(Message.run_id.in_(batch), Message.status.in_(SENT_STATUSES))
                .order_by(Message.run_id, Message.send_at, Message.created_at, Message.message_id)
            )
            for run_id, channel, send_at in rows:
                if send_at <= batch[run_id]:
                    touches[run_id].append(channel)
            for run_id in batch:
                credit.credit(touches.get(run_id, ()))
        return credit
