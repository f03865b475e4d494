"""A :class:`~engine.analytics.source.StatsSource` over the counters the database keeps.

Counts are ``stat_counters`` plus the deltas not folded into them yet
(``engine.store.stat_counters``): exact at every read, and as cheap on millions of runs as
on ten. Two counts are made from the tables, each an index range over what is still in
flight: conversion windows still open (they depend on the time of the report), and
messages still waiting to send (the outbox's backlog).
Every query runs in the session given, so one report reads one snapshot.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, union_all
from sqlalchemy.orm import Session

from engine.analytics.source import (
    WAITING_STATUSES,
    Attribution,
    ConversionTally,
    MessageTally,
    Scope,
    StepTally,
)
from engine.store.schema import JourneyVersion, Message, Run, StatCounter, StatDelta

#: (version, metric, step, channel, status, reason) of a counter.
Key = tuple[str, str, str, str, str, str]


class CounterStats:
    """Counts of one database's journey counters, read in ``session``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._read: dict[tuple[str, str | None], dict[Key, float]] = {}

    def _counters(self, scope: Scope) -> dict[Key, float]:
        """Every counter of the scope, its unfolded deltas added: one query per scope."""
        found = self._read.get((scope.journey_id, scope.version))
        if found is not None:
            return found
        parts = []
        for table in (StatCounter, StatDelta):
            where: list[ColumnElement[bool]] = [table.journey_id == scope.journey_id]
            if scope.version is not None:
                where.append(table.version == scope.version)
            parts.append(
                select(
                    table.version, table.metric, table.step, table.channel, table.status,
                    table.reason, table.n,
                ).where(*where)
            )  # fmt: skip
        both = union_all(*parts).subquery()
        key = (both.c.version, both.c.metric, both.c.step, both.c.channel, both.c.status,
               both.c.reason)  # fmt: skip
        found = {
            (version, metric, step, channel, status, reason): float(n or 0)
            for version, metric, step, channel, status, reason, n in self.session.execute(
                select(*key, func.sum(both.c.n)).group_by(*key)
            )
        }
        self._read[(scope.journey_id, scope.version)] = found
        return found

    def _of(self, scope: Scope, metric: str) -> Iterator[tuple[str, str, str, str, float]]:
        """(step, channel, status, reason, n) of each counter of ``metric``."""
        for (_, counted, step, channel, status, reason), n in self._counters(scope).items():
            if counted == metric:
                yield step, channel, status, reason, n

    def _total(self, scope: Scope, metric: str) -> int:
        return round(sum(n for *_, n in self._of(scope, metric)))

    # -- StatsSource --

    def versions(self, journey_id: str) -> Sequence[str]:
        counted = self._counters(Scope(journey_id))
        have = {version for version, metric, *_ in counted if metric == "entered"}
        deployed = self.session.execute(
            select(JourneyVersion.version, func.min(JourneyVersion.created_at))
            .where(JourneyVersion.journey_id == journey_id)
            .group_by(JourneyVersion.version)
        )
        deployed_at = {version: at for version, at in deployed}

        def order(version: str) -> tuple[int, datetime | str, str]:
            at = deployed_at.get(version)
            # Versions never deployed here (an imported database) go last, by name.
            return (0, at, version) if at is not None else (1, version, version)

        return sorted(have, key=order)

    def entered(self, scope: Scope) -> int:
        return self._total(scope, "entered")

    def outcomes(self, scope: Scope) -> Mapping[str, int]:
        total: Counter[str] = Counter()
        for _, _, status, _, n in self._of(scope, "status"):
            total[status] += round(n)
        return {status: count for status, count in total.items() if count}

    def reached(self, scope: Scope) -> Mapping[str, StepTally]:
        per_step: dict[str, Counter[str]] = defaultdict(Counter)
        for metric in ("reached", "visits", "step_converted"):
            for step, _, _, _, n in self._of(scope, metric):
                per_step[step][metric] += round(n)
        return {
            step: StepTally(c["reached"], c["visits"], c["step_converted"])
            for step, c in per_step.items()
            if c["reached"]
        }

    def messages(self, scope: Scope) -> Iterable[MessageTally]:
        total: Counter[tuple[str, str, str, str | None]] = Counter()
        for step, channel, status, reason, n in self._of(scope, "message"):
            total[(step, channel, status, reason or None)] += round(n)
        # Messages waiting to send are not counters (they change too often): the outbox's
        # backlog, found through the status index.
        where = [Message.journey_id == scope.journey_id, Message.status.in_(WAITING_STATUSES)]
        if scope.version is not None:
            where.append(Message.version == scope.version)
        waiting = select(Message.step, Message.channel, Message.status, func.count())
        for step, channel, status, count in self.session.execute(
            waiting.where(*where).group_by(Message.step, Message.channel, Message.status)
        ):
            total[(step, channel, status, None)] += int(count)
        return [MessageTally(*key, count) for key, count in sorted(total.items(), key=str) if count]

    def conversions(self, scope: Scope, now: datetime) -> ConversionTally:
        where = [
            Run.journey_id == scope.journey_id,
            Run.goal_until.is_not(None),
            Run.goal_until >= now,
            Run.converted_at.is_(None),
        ]
        if scope.version is not None:
            where.append(Run.version == scope.version)
        still_open = self.session.scalar(select(func.count()).select_from(Run).where(*where))
        return ConversionTally(self._total(scope, "converted"), int(still_open or 0))

    def attribution(self, scope: Scope) -> Attribution:
        credit = Attribution()
        credit.conversions = self._total(scope, "converted")
        credit.unattributed = self._total(scope, "unattributed")
        for touch, credited in (("first", credit.first), ("last", credit.last)):
            for _, channel, _, _, n in self._of(scope, touch):
                if round(n):
                    credited[channel] += round(n)
        for _, channel, _, _, n in self._of(scope, "linear"):
            if n:
                credit.linear[channel] = credit.linear.get(channel, 0.0) + n
        return credit
