"""The journey report (a funnel, conversions, attribution, split arms) and its one builder.

:func:`build_report` is the only place where counts become a report, whatever their
source: the live database (``journey stats``, ``GET /api/journeys/{id}/stats``), a
simulated stream (``journey simulate --stats``) or counters. Rates are fractions (0..1);
``as_json`` gives the API's shape.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from engine.analytics.shape import Edge, JourneyShape, duration_text
from engine.analytics.significance import (
    ALPHA,
    TEST_NAME,
    two_proportion_z_test,
    wilson_interval,
)
from engine.analytics.source import (
    SENT_STATUSES,
    WAITING_STATUSES,
    Scope,
    StatsSource,
    StepTally,
)
from engine.durations import iso_z
from engine.graph import END


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole > 0 else None


@dataclass
class MessageCounts:
    """Messages of a step (or of one of its channels) by outcome. ``sent`` counts every
    message handed to a provider, ``delivered`` and ``bounced`` those a report came for."""

    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    failed: int = 0
    waiting: int = 0
    cancelled: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)  # by reason

    @property
    def suppressed_total(self) -> int:
        return sum(self.suppressed.values())

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.waiting + self.cancelled + self.suppressed_total

    def add(self, status: str, reason: str | None, count: int) -> None:
        if status in SENT_STATUSES:
            self.sent += count
            if status == "delivered":
                self.delivered += count
            elif status == "bounced":
                self.bounced += count
        elif status == "suppressed":
            key = reason or "unknown"
            self.suppressed[key] = self.suppressed.get(key, 0) + count
        elif status == "failed":
            self.failed += count
        elif status in WAITING_STATUSES:
            self.waiting += count
        else:
            self.cancelled += count

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "suppressed_total": self.suppressed_total}


@dataclass
class StepReport:
    name: str
    kind: str  # wait|wait_for|send|branch|split, or "removed" (a step of another version)
    channels: tuple[str, ...]
    reached: int  # runs that reached the step
    visits: int
    converted: int  # of the runs that reached it
    messages: MessageCounts
    by_channel: dict[str, MessageCounts]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "channels": list(self.channels),
            "reached": self.reached,
            "visits": self.visits,
            "converted": self.converted,
            "messages": self.messages.as_json(),
            "by_channel": {c: m.as_json() for c, m in sorted(self.by_channel.items())},
        }


@dataclass
class ConversionReport:
    goal: tuple[str, ...]  # the goal's event names; empty: the journey has no goal
    within: str | None  # the goal window, as the journey writes it
    entered: int
    converted: int
    rate: float | None  # converted / entered
    open: int  # not converted, window still open
    decided: int  # converted, or window closed
    rate_decided: float | None  # converted / decided: the rate once every window closed

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "goal": list(self.goal)}


@dataclass
class ChannelCredit:
    channel: str
    first_touch: int
    last_touch: int
    linear: float


@dataclass
class AttributionReport:
    conversions: int
    unattributed: int
    channels: list[ChannelCredit]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ArmReport:
    step: str  # the arm's first step ("end" for an arm that ends the run)
    weight: int
    runs: int
    converted: int
    rate: float | None
    ci_low: float
    ci_high: float
    p_value: float | None  # against the leading arm (None for the leader itself)
    significant: bool  # differs from the leading arm at the split's corrected alpha


@dataclass
class SplitReport:
    step: str
    arms: list[ArmReport]
    leader: str | None  # the arm with the best rate, if any arm has runs
    significant: bool  # the leader beats every other arm
    test: str = TEST_NAME
    alpha: float = ALPHA
    confidence: float = 1 - ALPHA
    #: With more than two arms the leader is tested against each other arm at
    #: alpha / (arms - 1) (Bonferroni), so a winner is not declared by chance.
    alpha_per_comparison: float = ALPHA

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JourneyReport:
    journey: str
    name: str
    version: str | None  # None: every version together
    versions: list[str]
    at: datetime
    entered: int
    outcomes: dict[str, int]
    steps: list[StepReport]
    conversions: ConversionReport
    attribution: AttributionReport
    splits: list[SplitReport]

    def as_json(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "name": self.name,
            "version": self.version,
            "versions": self.versions,
            "at": iso_z(self.at),
            "entered": self.entered,
            "outcomes": self.outcomes,
            "steps": [step.as_json() for step in self.steps],
            "conversions": self.conversions.as_json(),
            "attribution": self.attribution.as_json(),
            "splits": [split.as_json() for split in self.splits],
        }

    def summary(self) -> dict[str, Any]:
        """One line of the all-journeys summary."""
        sent = sum(step.messages.sent for step in self.steps)
        suppressed = sum(step.messages.suppressed_total for step in self.steps)
        failed = sum(step.messages.failed for step in self.steps)
        return {
            "journey": self.journey,
            "name": self.name,
            "version": self.version,
            "entered": self.entered,
            "active": self.outcomes.get("active", 0),
            "converted": self.conversions.converted,
            "conversion_rate": self.conversions.rate,
            "sent": sent,
            "suppressed": suppressed,
            "failed": failed,
        }


def _splits(shape: JourneyShape, reached: dict[str, StepTally], alpha: float) -> list[SplitReport]:
    by_source: dict[str, list[Edge]] = defaultdict(list)
    for edge in shape.edges:
        by_source[edge.source].append(edge)
    reports = []
    for step in shape.steps:
        if step.kind != "split":
            continue
        weights = step.weights
        arms = [edge.target for edge in by_source[step.name]]
        tallies = {arm: reached.get(arm, StepTally()) for arm in arms if arm != END}
        if END in arms:  # an arm that ends the run at once: what the split saw, less the rest
            total = reached.get(step.name, StepTally())
            tallies[END] = StepTally(
                max(0, total.runs - sum(t.runs for t in tallies.values())),
                0,
                max(0, total.converted - sum(t.converted for t in tallies.values())),
            )
        rates = {a: tallies[a].converted / tallies[a].runs for a in arms if tallies[a].runs}
        best = max(rates.values(), default=None)
        leaders = [arm for arm, rate in rates.items() if rate == best]
        leader = leaders[0] if len(leaders) == 1 else None  # a tie leads nowhere
        per_comparison = alpha / max(1, len(arms) - 1)
        arm_reports = []
        for arm, weight in zip(arms, weights, strict=True):
            tally = tallies[arm]
            low, high = wilson_interval(tally.converted, tally.runs, alpha)
            p_value, significant = None, False
            if leader is not None and arm != leader:
                top = tallies[leader]
                test = two_proportion_z_test(top.converted, top.runs, tally.converted, tally.runs)
                p_value, significant = test.p_value, test.significant(per_comparison)
            arm_reports.append(
                ArmReport(
                    arm,
                    weight,
                    tally.runs,
                    tally.converted,
                    _rate(tally.converted, tally.runs),
                    low,
                    high,
                    p_value,
                    significant,
                )
            )
        others = [a for a in arm_reports if a.step != leader]
        reports.append(
            SplitReport(
                step.name,
                arm_reports,
                leader,
                leader is not None and bool(others) and all(a.significant for a in others),
                alpha=alpha,
                confidence=1 - alpha,
                alpha_per_comparison=per_comparison,
            )
        )
    return reports


def build_report(
    shape: JourneyShape,
    source: StatsSource,
    now: datetime,
    *,
    version: str | None = None,
    alpha: float = ALPHA,
) -> JourneyReport:
    """The report of ``shape``'s journey (``version``, or every version when None) from
    ``source``'s counts at ``now``. Steps follow ``shape``; steps only another version had
    are listed after them as ``removed``."""
    scope = Scope(shape.journey_id, version)
    reached = dict(source.reached(scope))
    steps: dict[str, StepReport] = {}
    for step in shape.steps:
        tally = reached.get(step.name, StepTally())
        steps[step.name] = StepReport(
            step.name, step.kind, step.channels, tally.runs, tally.visits, tally.converted,
            MessageCounts(), {},
        )  # fmt: skip

    def step_report(name: str) -> StepReport:
        found = steps.get(name)
        if found is None:
            tally = reached.get(name, StepTally())
            found = steps[name] = StepReport(
                name, "removed", (), tally.runs, tally.visits, tally.converted, MessageCounts(), {}
            )
        return found

    for name in reached:
        step_report(name)
    for sent in source.messages(scope):
        report = step_report(sent.step)
        report.messages.add(sent.status, sent.reason, sent.count)
        report.by_channel.setdefault(sent.channel, MessageCounts()).add(
            sent.status, sent.reason, sent.count
        )
    entered = source.entered(scope)
    conversions = source.conversions(scope, now)
    decided = max(0, entered - conversions.open)
    credit = source.attribution(scope)
    channels = sorted(set(credit.first) | set(credit.last) | set(credit.linear))
    return JourneyReport(
        journey=shape.journey_id,
        name=shape.name,
        version=version,
        versions=list(source.versions(shape.journey_id)),
        at=now,
        entered=entered,
        outcomes=dict(source.outcomes(scope)),
        steps=list(steps.values()),
        conversions=ConversionReport(
            shape.goal,
            duration_text(shape.goal_within) if shape.goal_within is not None else None,
            entered,
            conversions.converted,
            _rate(conversions.converted, entered),
            conversions.open,
            decided,
            _rate(conversions.converted, decided),
        ),
        attribution=AttributionReport(
            credit.conversions,
            credit.unattributed,
            [
                ChannelCredit(c, credit.first[c], credit.last[c], round(credit.linear.get(c, 0), 6))
                for c in channels
            ],
        ),
        splits=_splits(shape, reached, alpha),
    )
