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
from collections.abc import Iterable, Mapping, Sequence
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

Key = tuple[str, str, str, str, str]  # version, step, channel, status, reason


class CounterStats:
    """Counts of one database's journey counters, read in ``session``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._cache: dict[tuple[str, str | None, tuple[str, ...]], dict[Key, dict[str, float]]] = {}

    def _sums(self, scope: Scope, metrics: Sequence[str]) -> dict[Key, dict[str, float]]:
        """Per key, per metric, the counter and its unfolded deltas summed."""
        cache_key = (scope.journey_id, scope.version, tuple(metrics))
        found = self._cache.get(cache_key)
        if found is not None:
            return found

        parts = []
        for table in (StatCounter, StatDelta):
            where: list[ColumnElement[bool]] = [
                table.journey_id == scope.journey_id,
                table.metric.in_(metrics),
            ]
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
        sums: dict[Key, dict[str, float]] = defaultdict(dict)
        for version, metric, step, channel, status, reason, n in self.session.execute(
            select(*key, func.sum(both.c.n)).group_by(*key)
        ):
            sums[(version, step, channel, status, reason)][metric] = float(n or 0)
        self._cache[cache_key] = sums
        return sums

    def _total(self, scope: Scope, metric: str) -> float:
        return sum(m.get(metric, 0.0) for m in self._sums(scope, (metric,)).values())

    # -- StatsSource --

    def versions(self, journey_id: str) -> Sequence[str]:
        counted = select(StatCounter.version).where(
            StatCounter.journey_id == journey_id, StatCounter.metric == "entered"
        )
        pending = select(StatDelta.version).where(
            StatDelta.journey_id == journey_id, StatDelta.metric == "entered"
        )
        have = set(self.session.scalars(union_all(counted, pending)))
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
        return round(self._total(scope, "entered"))

    def outcomes(self, scope: Scope) -> Mapping[str, int]:
        total: Counter[str] = Counter()
        for (_, _, _, status, _), metrics in self._sums(scope, ("status",)).items():
            total[status] += round(metrics.get("status", 0.0))
        return {status: count for status, count in total.items() if count}

    def reached(self, scope: Scope) -> Mapping[str, StepTally]:
        per_step: dict[str, Counter[str]] = defaultdict(Counter)
        for (_, step, _, _, _), metrics in self._sums(
            scope, ("reached", "visits", "step_converted")
        ).items():
            for metric, n in metrics.items():
                per_step[step][metric] += round(n)
        return {
            step: StepTally(c["reached"], c["visits"], c["step_converted"])
            for step, c in per_step.items()
            if c["reached"]
        }

    def messages(self, scope: Scope) -> Iterable[MessageTally]:
        total: Counter[tuple[str, str, str, str | None]] = Counter()
        for (_, step, channel, status, reason), metrics in self._sums(scope, ("message",)).items():
            total[(step, channel, status, reason or None)] += round(metrics.get("message", 0.0))
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
        return ConversionTally(round(self._total(scope, "converted")), int(still_open or 0))

    def attribution(self, scope: Scope) -> Attribution:
        credit = Attribution()
        sums = self._sums(scope, ("converted", "unattributed", "first", "last", "linear"))
        for (_, _, channel, _, _), metrics in sums.items():
            credit.conversions += round(metrics.get("converted", 0.0))
            credit.unattributed += round(metrics.get("unattributed", 0.0))
            if channel:
                if first := round(metrics.get("first", 0.0)):
                    credit.first[channel] += first
                if last := round(metrics.get("last", 0.0)):
                    credit.last[channel] += last
                if linear := metrics.get("linear", 0.0):
                    credit.linear[channel] = credit.linear.get(channel, 0.0) + linear
        return credit
