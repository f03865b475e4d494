"""The report builder, the statistics under it, and attribution, on hand-made counts."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.analytics.report import build_report
from engine.analytics.shape import journey_shape
from engine.analytics.significance import two_proportion_z_test, wilson_interval
from engine.analytics.source import (
    Attribution,
    ConversionTally,
    MessageTally,
    Scope,
    StepTally,
)
from engine.project import compile_project

NOW = datetime(2026, 3, 1, tzinfo=UTC)

AB = """
id: ab
name: A/B
trigger: {event: Go}
goal: {event: Buy, within: 7d}
start: pick
steps:
  pick:
    split:
      - {weight: 50, next: a}
      - {weight: 30, next: b}
      - {weight: 20, next: end}
  a: {send: {channel: sms, content: {text: "A"}}, next: end}
  b: {send: {channel: email, content: {subject: "B", html: "<p>B</p>"}}, next: end}
"""


class Counts:
    """A StatsSource over fixed numbers."""

    def __init__(self, reached: Mapping[str, StepTally], entered: int) -> None:
        self._reached = reached
        self._entered = entered
        self.credit = Attribution()

    def versions(self, journey_id: str) -> Sequence[str]:
        return ["v1"]

    def entered(self, scope: Scope) -> int:
        return self._entered

    def outcomes(self, scope: Scope) -> Mapping[str, int]:
        return {"completed": self._entered}

    def reached(self, scope: Scope) -> Mapping[str, StepTally]:
        return self._reached

    def messages(self, scope: Scope) -> Iterable[MessageTally]:
        return [
            MessageTally("a", "sms", "sent", None, 900),
            MessageTally("a", "sms", "delivered", None, 80),
            MessageTally("a", "sms", "suppressed", "quiet_hours", 20),
            MessageTally("gone", "sms", "failed", None, 3),
        ]

    def conversions(self, scope: Scope, now: datetime) -> ConversionTally:
        return ConversionTally(converted=250, open=100)

    def attribution(self, scope: Scope) -> Attribution:
        return self.credit


@pytest.fixture
def shape(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "ab.yaml").write_text(textwrap.dedent(AB))
    return journey_shape(compile_project(tmp_path).journeys["ab"])


def test_wilson_intervals_and_the_z_test_match_published_values() -> None:
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 20)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(20, 20)[1] == pytest.approx(1.0, abs=1e-12)
    assert wilson_interval(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    test = two_proportion_z_test(50, 100, 30, 100)
    assert test.z == pytest.approx(2.8868, abs=1e-3)
    assert test.p_value == pytest.approx(0.00389, abs=1e-4)
    assert test.significant(0.05) and not test.significant(0.001)
    assert two_proportion_z_test(0, 10, 0, 10).p_value is None  # no variance: no verdict
    assert two_proportion_z_test(1, 0, 1, 10).z is None


def test_a_split_names_a_significant_winner_and_its_arms_intervals(shape) -> None:  # type: ignore[no-untyped-def]
    source = Counts(
        {
            "pick": StepTally(1000, 1000, 250),
            "a": StepTally(500, 500, 150),
            "b": StepTally(300, 300, 60),
        },
        entered=1000,
    )
    report = build_report(shape, source, NOW, version="v1")
    (split,) = report.splits
    assert [arm.step for arm in split.arms] == ["a", "b", "end"]
    a, b, end = split.arms
    assert (end.runs, end.converted) == (200, 40)  # what the split saw, less the other arms
    assert split.leader == "a" and a.rate == pytest.approx(0.3)
    assert a.ci_low < 0.3 < a.ci_high
    # Three arms: each comparison at alpha / 2 (Bonferroni).
    assert split.alpha_per_comparison == pytest.approx(0.025)
    assert b.significant and end.significant and split.significant
    assert "z-test" in split.test and split.alpha == 0.05
    step_a = next(step for step in report.steps if step.name == "a")
    assert step_a.messages.sent == 980 and step_a.messages.delivered == 80
    assert step_a.messages.suppressed == {"quiet_hours": 20}
    assert step_a.by_channel["sms"].sent == 980
    gone = report.steps[-1]
    assert (gone.name, gone.kind, gone.messages.failed) == ("gone", "removed", 3)
    c = report.conversions
    assert (c.converted, c.open, c.decided) == (250, 100, 900)
    assert c.rate == pytest.approx(0.25) and c.rate_decided == pytest.approx(250 / 900)
    assert c.within == "7d" and c.goal == ("Buy",)


def test_a_close_split_is_not_significant_and_a_tie_has_no_leader(shape) -> None:  # type: ignore[no-untyped-def]
    close = Counts(
        {"pick": StepTally(60, 60, 9), "a": StepTally(30, 30, 5), "b": StepTally(30, 30, 4)}, 60
    )
    (split,) = build_report(shape, close, NOW).splits
    assert split.leader == "a" and not split.significant
    tie = Counts(
        {"pick": StepTally(20, 20, 4), "a": StepTally(10, 10, 2), "b": StepTally(10, 10, 2)}, 20
    )
    (split,) = build_report(shape, tie, NOW).splits
    assert split.leader is None and not split.significant


def test_attribution_credits_first_last_and_linear_touches() -> None:
    credit = Attribution()
    credit.credit(["push", "sms", "sms"])
    credit.credit(["email"])
    credit.credit([])
    assert credit.conversions == 3 and credit.unattributed == 1
    assert credit.first == {"push": 1, "email": 1}
    assert credit.last == {"sms": 1, "email": 1}
    assert credit.linear == pytest.approx({"push": 1 / 3, "sms": 2 / 3, "email": 1.0})
    assert sum(credit.linear.values()) == pytest.approx(credit.conversions - credit.unattributed)
