"""RunState to and from JSON columns: what a run row's ``state`` holds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.runs import (
    RunState,
    Waiting,
)


def _event_out(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    stamp = out.get("timestamp")
    if isinstance(stamp, datetime):
        out["timestamp"] = stamp.isoformat()
    return out


def _event_in(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    stamp = out.get("timestamp")
    if isinstance(stamp, str):
        out["timestamp"] = datetime.fromisoformat(stamp)
    return out


def encode_state(run: RunState) -> dict[str, Any]:
    """The parts of a RunState that have no column of their own."""
    waiting = run.waiting
    return {
        "visits": dict(run.visits),
        "waiting": None
        if waiting is None
        else {
            "kind": waiting.kind,
            "timer_id": waiting.timer_id,
            "message_id": waiting.message_id,
            "attempt": waiting.attempt,
        },
        "trigger": _event_out(run.trigger),
        "event": _event_out(run.event),
    }


def decode_state(
    *,
    run_id: str,
    journey_id: str,
    version: str,
    user_id: str,
    status: str,
    step: str | None,
    entered_at: datetime,
    ended_at: datetime | None,
    converted_at: datetime | None,
    state: Mapping[str, Any],
) -> RunState:
    """Rebuild a RunState from a run row."""
    waiting = state.get("waiting")
    return RunState(
        run_id=run_id,
        journey_id=journey_id,
        version=version,
        user_id=user_id,
        entered_at=entered_at,
        trigger=_event_in(state["trigger"]),
        event=_event_in(state["event"]),
        status=status,
        step=step,
        visits=dict(state.get("visits") or {}),
        waiting=Waiting(
            waiting["kind"],
            timer_id=waiting.get("timer_id"),
            message_id=waiting.get("message_id"),
            attempt=int(waiting.get("attempt") or 0),
        )
        if waiting
        else None,
        converted_at=converted_at,
        ended_at=ended_at,
    )
