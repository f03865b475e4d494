"""What a run is and what it can say: its state, its inputs, and the runtime's commands.

These plain, immutable values are everything that crosses the boundary of the pure
runtime (``engine.runtime``): the simulator and the live engine build inputs,
keep states and carry out commands, without knowing how decisions are made.
Ids are deterministic, so replays and retries produce the same runs and messages.
Most are named tuples (see ``engine.values``): several are made per event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from engine.policies import SentMessage
from engine.values import value

ACTIVE, COMPLETED, EXITED = "active", "completed", "exited"

EventData = Mapping[str, Any]

# -- inputs -----------------------------------------------------------------------


@value
class EventInput(NamedTuple):
    """A user's event. ``name`` is what journeys match (track ``event``, page/screen ``name``)."""

    name: str | None
    data: EventData
    message_id: str


@value
class TimerFired(NamedTuple):
    timer_id: str


UNDELIVERABLE = "undeliverable"


@value
class DeliveryResult(NamedTuple):
    """How a dispatched message ended: ``sent``, ``failed`` (no fallback) or
    ``undeliverable`` (a permanent delivery failure: the next fallback channel is tried)."""

    message_id: str
    outcome: Literal["sent", "failed", "undeliverable"]


Input = EventInput | TimerFired | DeliveryResult


@value
class UserView(NamedTuple):
    """What the runtime may know of the user: id, merged traits, messages counting for caps."""

    user_id: str
    profile: Mapping[str, Any]
    sent: Collection[SentMessage] = ()


# -- state ------------------------------------------------------------------------


@value
class Waiting(NamedTuple):
    """What a run on a step waits for."""

    kind: Literal["timer", "event", "delivery", "deferred"]
    timer_id: str | None = None
    message_id: str | None = None
    attempt: int = 0


@value
class RunState(NamedTuple):
    """One user's pass through one journey."""

    run_id: str
    journey_id: str
    version: str
    user_id: str
    entered_at: datetime
    trigger: EventData
    event: EventData
    status: str = ACTIVE
    step: str | None = None
    visits: Mapping[str, int] = MappingProxyType({})
    waiting: Waiting | None = None
    converted_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


# -- commands ---------------------------------------------------------------------


@value
class RunFact(NamedTuple):
    """A fact about a run, for the record and the trace."""

    run_id: str
    journey_id: str
    user_id: str
    at: datetime


class Entered(RunFact):
    __slots__ = ()


class Converted(RunFact):
    __slots__ = ()


class Exited(RunFact):
    __slots__ = ()


class Completed(RunFact):
    __slots__ = ()


@value
class MessageRef(NamedTuple):
    """Identifies one message: the run, step, visit and channel it belongs to."""

    message_id: str
    run_id: str
    journey_id: str
    user_id: str
    step: str
    channel: str
    attempt: int


@value
class Suppressed(NamedTuple):
    message: MessageRef
    reason: str
    at: datetime


@value
class ScheduleMessage(NamedTuple):
    """A send deferred by quiet hours: it counts toward caps at ``at`` from now on."""

    message: MessageRef
    at: datetime


@value
class Dispatch(NamedTuple):
    """Render and deliver now, then feed back a DeliveryResult."""

    message: MessageRef
    at: datetime


@value
class CancelMessage(NamedTuple):
    message_id: str


@value
class ScheduleTimer(NamedTuple):
    timer_id: str
    run_id: str
    due_at: datetime


@value
class CancelTimer(NamedTuple):
    timer_id: str


Command = (
    Entered
    | Converted
    | Exited
    | Completed
    | Suppressed
    | ScheduleMessage
    | Dispatch
    | CancelMessage
    | ScheduleTimer
    | CancelTimer
)


@value
class Transition(NamedTuple):
    run: RunState
    commands: tuple[Command, ...]


# -- ids --------------------------------------------------------------------------


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def make_run_id(journey_id: str, user_id: str, entry_number: int) -> str:
    """Deterministic: the ``entry_number``-th entry of ``user_id`` into the journey."""
    return "run_" + _digest("run", journey_id, user_id, str(entry_number))[:24]


def make_message_id(run_id: str, step: str, visit: int, channel: str) -> str:
    """Deterministic per (run, step, visit of that step, channel): the idempotency key."""
    return "msg_" + _digest("msg", run_id, step, str(visit), channel)[:24]


def split_bucket(user_id: str, journey_id: str, step: str, total: int) -> int:
    """A stable number in ``[0, total)`` for (user, journey, step)."""
    return int(_digest("split", user_id, journey_id, step)[:15], 16) % total


@dataclass(frozen=True, slots=True)
class EntryHistory:
    """How often and when a user last entered a journey."""

    count: int = 0
    last_entered_at: datetime | None = None
