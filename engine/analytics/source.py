"""Where a journey report's counts come from: the :class:`StatsSource` interface.

A source answers a handful of questions about one journey (one version, or all of them),
each already aggregated, so that a source can keep its answers as counters instead of
scanning runs: ``engine.analytics.database`` counts from the runs and messages tables,
``engine.analytics.tally`` keeps counters in memory (fed by a simulation), and a source
over counters maintained by the engine answers the same questions. ``build_report``
(``engine.analytics.report``) needs nothing else.

Attribution is credited one conversion at a time (:meth:`Attribution.credit`) with the
channels of the messages the run received before converting, oldest first: a source
that keeps counters credits each conversion as it happens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

#: Statuses of a message that reached its recipient's provider.
SENT_STATUSES = frozenset({"sent", "delivered", "bounced"})
#: Statuses of a message not yet sent (deferred by quiet hours, due, being sent).
WAITING_STATUSES = frozenset({"scheduled", "pending", "sending"})


@dataclass(frozen=True)
class Scope:
    """One journey, in one version or (``version`` None) every version it had."""

    journey_id: str
    version: str | None = None


@dataclass(frozen=True)
class StepTally:
    """Runs that reached a step (at least once), visits in all, and how many of those
    runs converted."""

    runs: int = 0
    visits: int = 0
    converted: int = 0


@dataclass(frozen=True)
class MessageTally:
    """How many messages of a step went out on a channel with a status (and reason)."""

    step: str
    channel: str
    status: str
    reason: str | None
    count: int


@dataclass(frozen=True)
class ConversionTally:
    """Runs that converted, and runs that have not but still can (window open)."""

    converted: int = 0
    open: int = 0


@dataclass
class Attribution:
    """Conversions credited to channels: the first touch, the last touch, and linear
    (each touch an equal share). A conversion without any message before it is
    ``unattributed``."""

    conversions: int = 0
    unattributed: int = 0
    first: Counter[str] = field(default_factory=Counter)
    last: Counter[str] = field(default_factory=Counter)
    linear: dict[str, float] = field(default_factory=dict)

    def credit(self, channels: Sequence[str]) -> None:
        """One conversion, after messages on ``channels`` (oldest first)."""
        self.conversions += 1
        if not channels:
            self.unattributed += 1
            return
        self.first[channels[0]] += 1
        self.last[channels[-1]] += 1
        share = 1 / len(channels)
        for channel in channels:
            self.linear[channel] = self.linear.get(channel, 0.0) + share

    def __iadd__(self, other: Attribution) -> Attribution:
        self.conversions += other.conversions
        self.unattributed += other.unattributed
        self.first.update(other.first)
        self.last.update(other.last)
        for channel, share in other.linear.items():
            self.linear[channel] = self.linear.get(channel, 0.0) + share
        return self


class StatsSource(Protocol):
    """The counts a journey report is built from, for one journey scope."""

    def versions(self, journey_id: str) -> Sequence[str]:
        """The versions of the journey that have runs, oldest first."""

    def entered(self, scope: Scope) -> int:
        """Runs that entered."""

    def outcomes(self, scope: Scope) -> Mapping[str, int]:
        """Runs by status now: active, completed, exited, forgotten."""

    def reached(self, scope: Scope) -> Mapping[str, StepTally]:
        """Per step, the runs that reached it."""

    def messages(self, scope: Scope) -> Iterable[MessageTally]:
        """Messages per step, channel, status and reason."""

    def conversions(self, scope: Scope, now: datetime) -> ConversionTally:
        """Runs converted, and runs whose conversion window is still open at ``now``."""

    def attribution(self, scope: Scope) -> Attribution:
        """The conversions, credited to the channels of the messages before them."""
