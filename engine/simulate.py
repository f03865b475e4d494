"""``journey simulate``: the real engine on a virtual clock, nothing sent (format section 8).

The :class:`~engine.processor.Processor` is the live engine's too; here users
live in a dict, timers in a heap, and every dispatch is rendered on the spot and
recorded as sent. Events are applied in timestamp order; before each event every
timer due at or before it fires, in due order, then set order. After the last
event, timers keep firing up to ``until``. The trace is one JSON object per line.
"""

from __future__ import annotations

import gc
import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from engine.catalog import Project, SingleVersion
from engine.durations import iso_z
from engine.errors import RenderError
from engine.event_files import micros
from engine.events import Event
from engine.graph import CompiledJourney, SendNode
from engine.identity import IdentityMap
from engine.messages import DEFAULT_PUBLIC_URL, address_of, render_message
from engine.processor import Processor, UserState
from engine.runs import (
    DeliveryResult,
    Dispatch,
    MessageRef,
    RunFact,
    RunState,
    ScheduleMessage,
    ScheduleTimer,
    Suppressed,
)
from engine.signed_links import SIMULATION_SECRET_KEY

TraceLine = dict[str, Any]
#: Events between two moves of what is alive into the collector's permanent generation.
FREEZE_EVERY = 1_000
#: Moves in a row that found no garbage before collecting is left to the occasional check.
CALM_MOVES = 8
#: Moves between two such checks.
CHECK_EVERY = 64


@contextmanager
def collected_by_hand() -> Iterator[Callable[[], bool]]:
    """The garbage collector's automatic passes off; the function yielded, called once per
    event, moves what is alive into the permanent generation every FREEZE_EVERY calls
    (and says when it did).

    A simulation's state (users, runs, timers) only grows; left to itself the collector
    walks it again and again (a fifth of a run on a million events). Its events make
    next to no reference cycles, yet collecting the young objects before each move,
    only to find none, still cost a twentieth. So the young objects are collected
    before each move only until CALM_MOVES moves in a row found no garbage; then once
    every CHECK_EVERY moves, and after any check that finds some, before every move
    again. What a calm stretch leaves uncollected is the few cycles of CHECK_EVERY
    moves at most.
    """
    calls = moves = calm = 0

    def tick() -> bool:
        nonlocal calls, moves, calm
        calls += 1
        if calls % FREEZE_EVERY:
            return False
        moves += 1
        if calm < CALM_MOVES or moves % CHECK_EVERY == 0:
            calm = 0 if gc.collect(1) else calm + 1
        gc.freeze()
        return True

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield tick
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class Summary:
    """Counts per journey for the human summary."""

    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, journey_id: str, what: str) -> None:
        self.counts[journey_id][what] += 1


class SimulationObserver(Protocol):
    """Watches what a simulation does beyond its trace (``journey simulate --stats``)."""

    def fact(self, user: UserState, kind: str, fact: RunFact) -> None:
        """A run entered, converted, exited or completed (the user holds the run)."""

    def message(self, ref: MessageRef, status: str, reason: str | None, at: datetime) -> None:
        """A message was sent, suppressed or failed."""


class MemoryBook:
    """Users in a dict, ids linked in memory."""

    def __init__(self) -> None:
        self.users: dict[str, UserState] = {}
        self.identities = IdentityMap()

    def resolve(self, user_id: str | None, anonymous_id: str | None) -> str:
        return self.identities.resolve(user_id, anonymous_id)

    def get(self, key: str) -> UserState:
        user = self.users.get(key)
        if user is None:
            user = self.users[key] = UserState(key)
        return user

    def link(self, source: str, target: str, now: datetime) -> str | None:
        return self.identities.owner(target) if self.identities.link(source, target) else None

    def take(self, key: str) -> UserState | None:
        return self.users.pop(key, None)


class Simulation:
    """Drives the processor over events and a timer heap, emitting trace lines."""

    def __init__(
        self,
        project: Project,
        emit: Callable[[TraceLine], None],
        public_url: str = DEFAULT_PUBLIC_URL,
        observer: SimulationObserver | None = None,
    ) -> None:
        self.project = project
        self.observer = observer
        self.emit = emit
        self.public_url = public_url
        self.book = MemoryBook()
        self.processor = Processor(SingleVersion(project), self.book, self, memory_only=True)
        #: (due in µs since the epoch, set order, timer id, due): ints compare fast.
        self.timers: list[tuple[int, int, str, datetime]] = []
        self.timer_owner: dict[str, tuple[str, str]] = {}  # timer -> (user key, run id)
        self.sequence = 0
        self.summary = Summary()
        #: The channels the journeys send on, for the address of each message line.
        self.channels = {
            attempt.channel.name: attempt.channel
            for journey in project.journeys.values()
            for node in journey.nodes.values()
            if isinstance(node, SendNode)
            for attempt in node.attempts
        }

    @property
    def users(self) -> dict[str, UserState]:
        return self.book.users

    # -- driving --

    def run(self, events: Iterable[Event], until: datetime | None = None) -> None:
        """Apply ``events`` (already in time order), then fire timers up to ``until``."""
        take = self.take
        for event in events:
            take(event)
        if until is not None:
            self.fire_due(until)

    def take(self, event: Event) -> None:
        """The timers due at or before ``event``, then ``event`` itself."""
        now = event.timestamp
        timers = self.timers
        if timers and timers[0][3] <= now:
            self.fire_due(now)
        self.apply(event, now)

    def apply(self, event: Event, now: datetime) -> None:
        """Apply one event (its timers have fired)."""
        self.processor.apply(event, now)

    def fire_due(self, moment: datetime) -> None:
        """Fire every live timer due at or before ``moment``, in (due, set) order."""
        timers, owners, fire = self.timers, self.timer_owner, self.fire
        while timers and timers[0][3] <= moment:
            due_micros, _, timer_id, due = heapq.heappop(timers)
            owner = owners.pop(timer_id, None)
            if owner is not None:  # else cancelled
                fire(timer_id, owner, due, due_micros)

    def fire(self, timer_id: str, owner: tuple[str, str], due: datetime, due_micros: int) -> None:
        """Fire one live timer of ``owner`` (user key, run id), due at ``due``."""
        key, run_id = owner
        user = self.book.users.get(self.book.identities.owner(key))
        if user is not None:
            self.processor.fire(user, run_id, timer_id, due)

    # -- effects --

    def fact(self, user: UserState, kind: str, fact: RunFact) -> None:
        self.summary.add(fact.journey_id, kind)
        if self.observer is not None:
            self.observer.fact(user, kind, fact)
        self.emit(
            {
                "type": kind,
                "at": iso_z(fact.at),
                "journey": fact.journey_id,
                "user_id": user.user_id,
            }
        )

    def timer_set(self, user: UserState, command: ScheduleTimer) -> None:
        self.sequence += 1
        due = command.due_at
        heapq.heappush(self.timers, (micros(due), self.sequence, command.timer_id, due))
        self.timer_owner[command.timer_id] = (user.key, command.run_id)

    def timer_cancelled(self, user: UserState, timer_id: str) -> None:
        self.timer_owner.pop(timer_id, None)

    def suppressed(self, user: UserState, command: Suppressed) -> None:
        self.message_line(user, command.message, "suppressed", command.reason, None, command.at)

    def message_scheduled(self, user: UserState, command: ScheduleMessage) -> None:
        """Nothing beyond the cap slot the processor already took."""

    def message_cancelled(self, user: UserState, message_id: str) -> None:
        """Nothing beyond the cap slot the processor already gave back."""

    def dispatch(
        self, user: UserState, journey: CompiledJourney, run: RunState, command: Dispatch
    ) -> DeliveryResult:
        ref = command.message
        try:
            content = render_message(
                journey,
                ref,
                run,
                user.profile,
                command.at,
                self.public_url,
                user_key=user.key,
                secret_key=SIMULATION_SECRET_KEY,
            )
        except RenderError as exc:
            self.message_line(user, ref, "failed", str(exc), None, command.at)
            return DeliveryResult(ref.message_id, "failed")
        self.message_line(user, ref, "sent", None, content, command.at)
        return DeliveryResult(ref.message_id, "sent")

    def run_saved(self, user: UserState, run: RunState) -> None:
        """Runs live in the user's state already."""

    def run_dropped(self, user: UserState, run: RunState) -> None:
        if run.waiting and run.waiting.timer_id:
            self.timer_owner.pop(run.waiting.timer_id, None)

    def message_line(
        self,
        user: UserState,
        ref: MessageRef,
        status: str,
        reason: str | None,
        content: dict[str, str] | None,
        at: datetime,
    ) -> None:
        channel = ref.channel
        self.summary.add(ref.journey_id, f"{status}:{reason}" if status == "suppressed" else status)
        if self.observer is not None:
            self.observer.message(ref, status, reason, at)
        self.emit(
            {
                "type": "message",
                "at": iso_z(at),
                "journey": ref.journey_id,
                "step": ref.step,
                "user_id": user.user_id,
                "channel": channel,
                "to": address_of(self.channels.get(channel) or channel, user.profile),
                "status": status,
                "reason": reason,
                "content": content,
            }
        )
