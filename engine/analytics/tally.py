"""Counters in memory: a :class:`StatsSource` fed by ``journey simulate``.

A run's steps are counted once, when it ends (its visits are final then) or, for a run
still active, when the report is made; a conversion is credited to every step its run
reached. Attribution needs the channels of the messages each run was sent before it
converted: they are kept only for journeys with a goal, and only while the run's
conversion window is open (swept as the simulation's clock passes them), so memory
stays bounded by the runs that can still convert.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.analytics.source import (
    SENT_STATUSES,
    Attribution,
    ConversionTally,
    MessageTally,
    Scope,
    StepTally,
)
from engine.catalog import Project
from engine.processor import UserState
from engine.runs import MessageRef, RunFact, RunState

#: Touches kept before the next sweep of closed conversion windows.
SWEEP_EVERY = 50_000


@dataclass
class JourneyCounts:
    """Everything counted about one journey version."""

    entered: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)  # step -> runs that reached it
    visits: Counter[str] = field(default_factory=Counter)
    converted_at_step: Counter[str] = field(default_factory=Counter)
    messages: Counter[tuple[str, str, str, str | None]] = field(default_factory=Counter)
    converted: int = 0
    open: int = 0  # set when the report is made
    attribution: Attribution = field(default_factory=Attribution)

    def count_steps(self, run: RunState) -> None:
        for step, times in run.visits.items():
            self.runs[step] += 1
            self.visits[step] += times
            if run.converted_at is not None:
                self.converted_at_step[step] += 1

    def count_conversion_of_ended(self, run: RunState) -> None:
        for step in run.visits:
            self.converted_at_step[step] += 1


class MemoryStats:
    """A :class:`~engine.analytics.source.StatsSource` over counters kept in memory."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], JourneyCounts] = {}

    def of(self, journey_id: str, version: str) -> JourneyCounts:
        found = self.counts.get((journey_id, version))
        if found is None:
            found = self.counts[(journey_id, version)] = JourneyCounts()
        return found

    def _scoped(self, scope: Scope) -> list[JourneyCounts]:
        return [
            counts
            for (journey_id, version), counts in sorted(self.counts.items())
            if journey_id == scope.journey_id and scope.version in (None, version)
        ]

    # -- StatsSource --

    def versions(self, journey_id: str) -> Sequence[str]:
        return sorted(version for j, version in self.counts if j == journey_id)

    def entered(self, scope: Scope) -> int:
        return sum(c.entered for c in self._scoped(scope))

    def outcomes(self, scope: Scope) -> Mapping[str, int]:
        total: Counter[str] = Counter()
        for counts in self._scoped(scope):
            total.update(counts.outcomes)
        return {status: count for status, count in total.items() if count}

    def reached(self, scope: Scope) -> Mapping[str, StepTally]:
        runs: Counter[str] = Counter()
        visits: Counter[str] = Counter()
        converted: Counter[str] = Counter()
        for counts in self._scoped(scope):
            runs.update(counts.runs)
            visits.update(counts.visits)
            converted.update(counts.converted_at_step)
        return {step: StepTally(runs[step], visits[step], converted[step]) for step in runs}

    def messages(self, scope: Scope) -> Iterable[MessageTally]:
        total: Counter[tuple[str, str, str, str | None]] = Counter()
        for counts in self._scoped(scope):
            total.update(counts.messages)
        return [MessageTally(*key, count) for key, count in sorted(total.items(), key=str)]

    def conversions(self, scope: Scope, now: datetime) -> ConversionTally:
        scoped = self._scoped(scope)
        return ConversionTally(sum(c.converted for c in scoped), sum(c.open for c in scoped))

    def attribution(self, scope: Scope) -> Attribution:
        total = Attribution()
        for counts in self._scoped(scope):
            total += counts.attribution
        return total


class SimulationStats:
    """Watches a simulation (``Simulation(observer=...)``) and counts into a MemoryStats."""

    def __init__(self, project: Project) -> None:
        self.stats = MemoryStats()
        self.project = project
        self.windows: dict[str, timedelta] = {
            journey.id: journey.goal.within
            for journey in project.journeys.values()
            if journey.goal is not None
        }
        #: run id -> (end of its conversion window, channels it was sent, oldest first)
        self.touches: dict[str, tuple[datetime, list[str]]] = {}
        self._until_sweep = SWEEP_EVERY
        #: Runs that ended at ``_moment`` (the instant of the latest end), counted already.
        self._moment: datetime | None = None
        self._ended_now: set[str] = set()

    def _counts(self, journey_id: str) -> JourneyCounts:
        return self.stats.of(journey_id, self.project.journeys[journey_id].version)

    def fact(self, user: UserState, kind: str, fact: RunFact) -> None:
        counts = self._counts(fact.journey_id)
        run = user.runs.get(fact.run_id)
        if kind == "entered":
            counts.entered += 1
        elif kind == "converted":
            counts.converted += 1
            touched = self.touches.pop(fact.run_id, None)
            counts.attribution.credit(touched[1] if touched else ())
            # A run that converts as it ends (the goal's event also exits it) is counted
            # by the end that follows in the same transition, with its conversion.
            if (
                run is not None
                and not run.active
                and (run.ended_at != fact.at or fact.run_id in self._ended_now)
            ):
                counts.count_conversion_of_ended(run)
        else:  # completed, exited: the run's steps are final
            counts.outcomes[kind] += 1
            if run is not None:
                counts.count_steps(run)
            if fact.at != self._moment:
                self._moment, self._ended_now = fact.at, set()
            self._ended_now.add(fact.run_id)

    def message(self, ref: MessageRef, status: str, reason: str | None, at: datetime) -> None:
        counts = self._counts(ref.journey_id)
        counts.messages[(ref.step, ref.channel, status, reason)] += 1
        window = self.windows.get(ref.journey_id)
        if window is None or status not in SENT_STATUSES:
            return
        touched = self.touches.get(ref.run_id)
        if touched is None:
            # The run entered at most ``window`` ago; the window ends no later than this.
            touched = self.touches[ref.run_id] = (at + window, [])
        touched[1].append(ref.channel)
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._sweep(at)

    def _sweep(self, now: datetime) -> None:
        """Forget the touches of runs whose conversion window has closed."""
        self.touches = {run: t for run, t in self.touches.items() if t[0] >= now}
        self._until_sweep = max(SWEEP_EVERY, len(self.touches))

    def finish(self, users: Iterable[UserState], now: datetime) -> MemoryStats:
        """Count the runs still active, and the windows still open, at ``now``."""
        for counts in self.stats.counts.values():
            counts.open = 0
            counts.outcomes["active"] = 0
        for user in users:
            for run in user.runs.values():
                counts = self._counts(run.journey_id)
                if run.active:
                    counts.outcomes["active"] += 1
                    counts.count_steps(run)
                window = self.windows.get(run.journey_id)
                if window and run.converted_at is None and now <= run.entered_at + window:
                    counts.open += 1
        return self.stats
