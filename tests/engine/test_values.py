"""engine.values: the runtime's named tuples compare like dataclasses and stay immutable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.events import parse_message
from engine.policies import Allow, Suppress
from engine.runs import CancelTimer, Completed, Entered, RunState, TimerFired

AT = datetime(2026, 3, 1, tzinfo=UTC)


def test_equal_only_to_the_same_class_with_equal_fields() -> None:
    assert Entered("r", "j", "u", AT) == Entered("r", "j", "u", AT)
    assert Entered("r", "j", "u", AT) != Completed("r", "j", "u", AT)
    assert CancelTimer("t1") != TimerFired("t1")
    assert TimerFired("t1") != ("t1",)
    assert Suppress("unsubscribed") == Suppress("unsubscribed") != Allow(AT)
    assert len({Entered("r", "j", "u", AT), Entered("r", "j", "u", AT)}) == 1


def test_values_are_immutable() -> None:
    run = RunState("r", "j", "v", "u", AT, {}, {})
    with pytest.raises(AttributeError):
        run.step = "x"  # type: ignore[misc]
    event = parse_message(
        {"type": "track", "event": "Go", "userId": "u", "messageId": "m", "timestamp": AT}
    )
    with pytest.raises(AttributeError):
        event.name = "Stop"  # type: ignore[misc]
    assert run.visits == {} and run.waiting is None and run.active
