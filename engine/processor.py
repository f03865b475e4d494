"""The shell's decisions in one place: how events, timers and delivery results reach runs.

``runtime`` decides what one run does with one input. This module decides which
runs get which input, in the order the format fixes (section 9): identity and
traits first; then the user's runs in the order they entered (goal, exit,
wait_for); then triggers of journeys in ``id`` order. It also merges users when
ids are linked. It is shared by ``journey simulate`` (users in memory, a timer
heap, messages rendered on the spot) and the live engine (users, timers and the
outbox in the database), which differ only in their :class:`UserBook` and
:class:`Effects`.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from engine.catalog import Catalog as Catalog  # re-exported for the processor's users
from engine.events import Event
from engine.graph import CompiledJourney
from engine.identity import anonymous_key, display_id, merge_traits, user_key
from engine.policies import SentMessage, SentSlots
from engine.runs import (
    CancelMessage,
    CancelTimer,
    Completed,
    Converted,
    DeliveryResult,
    Dispatch,
    Entered,
    EntryHistory,
    EventInput,
    Exited,
    Input,
    MessageRef,
    RunFact,
    RunState,
    ScheduleMessage,
    ScheduleTimer,
    Suppressed,
    TimerFired,
    Transition,
    UserView,
    make_run_id,
)
from engine.runtime import (
    advance,
    enter,
    goal_open,
    may_enter,
)

NO_ENTRIES = EntryHistory()

FACT_NAMES: Mapping[type, str] = {
    Entered: "entered",
    Converted: "converted",
    Exited: "exited",
    Completed: "completed",
}


@dataclass
class UserState:
    """What the engine holds of one user while applying inputs to them.

    ``runs`` holds the active runs and the ended runs whose conversion window is
    still open, in the order they entered; ``sent`` the messages that count
    toward frequency caps.
    """

    key: str
    profile: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, RunState] = field(default_factory=dict)
    entries: dict[str, EntryHistory] = field(default_factory=dict)
    sent: SentSlots = field(default_factory=SentSlots)
    #: The id trace lines and templates show (the key without its prefix).
    user_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.user_id = display_id(self.key)

    def view(self) -> UserView:
        """What the runtime may know of the user now (read before the user changes)."""
        return UserView(self.user_id, self.profile, self.sent)

    def active_run(self, journey_id: str) -> RunState | None:
        for run in self.runs.values():
            if run.journey_id == journey_id and run.active:
                return run
        return None


class UserBook(Protocol):
    """Where users live: loads them, resolves ids to keys, links ids."""

    def resolve(self, user_id: str | None, anonymous_id: str | None) -> str:
        """The key that owns an event's ids now."""

    def get(self, key: str) -> UserState:
        """The user under ``key`` (a new, empty one if unknown), ready to change."""

    def link(self, source: str, target: str, now: datetime) -> str | None:
        """Link key ``source`` to ``target``'s owner; the owner's key, or None if unchanged."""

    def take(self, key: str) -> UserState | None:
        """Remove the user under ``key`` (merged into another) and return it, if known."""


class Effects(Protocol):
    """What carrying out the runtime's commands means here."""

    def fact(self, user: UserState, kind: str, fact: RunFact) -> None:
        """A run entered, converted, exited or completed."""

    def timer_set(self, user: UserState, command: ScheduleTimer) -> None: ...

    def timer_cancelled(self, user: UserState, timer_id: str) -> None: ...

    def suppressed(self, user: UserState, command: Suppressed) -> None: ...

    def message_scheduled(self, user: UserState, command: ScheduleMessage) -> None: ...

    def message_cancelled(self, user: UserState, message_id: str) -> None: ...

    def dispatch(
        self, user: UserState, journey: CompiledJourney, run: RunState, command: Dispatch
    ) -> DeliveryResult | None:
        """Send now and return the result, or queue it (None: the result comes later)."""

    def run_saved(self, user: UserState, run: RunState) -> None:
        """A run changed (or was created)."""

    def run_dropped(self, user: UserState, run: RunState) -> None:
        """A run is gone: merged away, or ended with no conversion window left."""


def acts_on(event: Event, names: Container[str]) -> bool:
    """Whether applying ``event`` can do anything, where ``names`` are the events the
    current journeys listen to: identity and traits, and those events. Any other event
    changes nothing."""
    kind = event.type
    if kind == "identify" or kind == "alias":
        return True
    name = event.name
    return name is not None and name in names


class Processor:
    """Applies events, fired timers and delivery results to users' runs.

    ``memory_only`` is for ``journey simulate``, where users live in this process
    only and the clock never goes back. There, what can no longer matter is
    forgotten as it is met (ended runs whose conversion window has closed, cap
    slots older than the longest cap), and an input that changes a run in no way
    is not carried out. The live engine keeps every run and slot it loaded (its
    inputs' times may differ by moments, in either direction) and saves every run
    an input reached.
    """

    def __init__(
        self,
        catalog: Catalog,
        book: UserBook,
        effects: Effects,
        *,
        memory_only: bool = False,
    ) -> None:
        self.catalog = catalog
        self.book = book
        self.effects = effects
        self.memory_only = memory_only
        self._handlers: dict[type, Callable[[UserState, Any], None]] = {
            ScheduleTimer: effects.timer_set,
            CancelTimer: self._cancel_timer,
            Suppressed: self._suppressed,
            CancelMessage: self._cancel_message,
            Entered: self._fact,
            Converted: self._fact,
            Exited: self._fact,
            Completed: self._fact,
        }

    # -- inputs --

    def apply(self, event: Event, now: datetime) -> None:
        """Apply one event at ``now``: identity and traits, then runs, then triggers."""
        kind = event.type
        if kind == "identify" or kind == "alias":
            self.identify(event, now)
            return
        name = event.name
        if name is None:
            return
        project = self.catalog.current
        if name not in project.by_event:
            return
        user = self.book.get(self.book.resolve(event.user_id, event.anonymous_id))
        item = EventInput(name, event.data(), event.message_id)
        if user.runs:
            memory_only = self.memory_only
            for run in list(user.runs.values()):
                journey = self.catalog.journey(run.journey_id, run.version)
                if run.active or goal_open(journey, run, now):
                    # A journey's trigger alone cannot move a run of it: in memory,
                    # where an unchanged run needs no saving, such events pass by.
                    if name in (journey.moved_by if memory_only else journey.listens_to):
                        self.step(user, journey, run, item, now)
                elif memory_only:
                    del user.runs[run.run_id]  # ended, and can no longer convert
        view = user.view()
        halted = self.catalog.halted
        for journey in project.triggered_by[name]:
            if journey.id in halted:
                continue  # paused or stopped: it admits no one
            history = user.entries.get(journey.id, NO_ENTRIES)
            has_active = user.active_run(journey.id) is not None
            if may_enter(journey, item, now, view, history, has_active):
                number = history.count + 1
                user.entries[journey.id] = EntryHistory(number, now)
                run_id = make_run_id(journey.id, user.user_id, number)
                transition = enter(journey, run_id, item, now, view, project.policies)
                self.carry_out(user, journey, transition, now)

    def acts_on(self, event: Event) -> bool:
        """Whether :meth:`apply` does anything with ``event`` (see :func:`acts_on`)."""
        return acts_on(event, self.catalog.current.by_event)

    def fire(self, user: UserState, run_id: str, timer_id: str, now: datetime) -> None:
        """A timer of ``run_id`` came due at ``now``."""
        run = user.runs.get(run_id)
        if run is not None:
            journey = self.catalog.journey(run.journey_id, run.version)
            self.step(user, journey, run, TimerFired(timer_id), now)

    def delivered(
        self, user: UserState, run_id: str, result: DeliveryResult, now: datetime
    ) -> None:
        """A dispatched message of ``run_id`` ended as ``result``."""
        if result.outcome != "sent":
            user.sent.pop(result.message_id, None)  # only messages sent keep their cap slot
        run = user.runs.get(run_id)
        if run is not None:
            journey = self.catalog.journey(run.journey_id, run.version)
            self.step(user, journey, run, result, now)

    def step(
        self, user: UserState, journey: CompiledJourney, run: RunState, item: Input, now: datetime
    ) -> None:
        transition = advance(journey, run, item, now, user.view(), self.catalog.current.policies)
        unchanged = transition.run is run and not transition.commands
        if self.memory_only and unchanged and (run.active or goal_open(journey, run, now)):
            return  # nothing changed, and nothing is kept but the run itself
        self.carry_out(user, journey, transition, now)

    # -- identity --

    def identify(self, event: Event, now: datetime) -> None:
        """``identify`` links ids and merges traits; ``alias`` links ids."""
        if event.type == "alias":
            # Segment's previousId is either an anonymousId or an earlier userId.
            assert event.user_id is not None and event.previous_id is not None
            self.link(anonymous_key(event.previous_id), user_key(event.user_id), now)
            self.link(user_key(event.previous_id), user_key(event.user_id), now)
            return
        if event.user_id is not None and event.anonymous_id is not None:
            self.link(anonymous_key(event.anonymous_id), user_key(event.user_id), now)
        user = self.book.get(self.book.resolve(event.user_id, event.anonymous_id))
        if event.traits:
            user.profile = merge_traits(user.profile, event.traits)

    def link(self, source: str, target: str, now: datetime) -> None:
        """Move everything of ``source`` to the owner of ``target`` (format section 9)."""
        owner_key = self.book.link(source, target, now)
        if owner_key is None:
            return
        gone = self.book.take(source)
        if gone is None:
            return
        owner = self.book.get(owner_key)
        owner.profile = merge_traits(gone.profile, owner.profile)  # the known user's traits win
        for run in gone.runs.values():
            if run.active and owner.active_run(run.journey_id) is not None:
                self.effects.run_dropped(gone, run)  # the known user's own run wins
                continue
            owner.runs[run.run_id] = run
            self.effects.run_saved(owner, run)
        for journey_id, theirs in gone.entries.items():
            mine = owner.entries.get(journey_id, NO_ENTRIES)
            moments = [t for t in (mine.last_entered_at, theirs.last_entered_at) if t is not None]
            owner.entries[journey_id] = EntryHistory(
                mine.count + theirs.count, max(moments) if moments else None
            )
        owner.sent.update(gone.sent)

    # -- commands --

    def carry_out(
        self, user: UserState, journey: CompiledJourney, transition: Transition, now: datetime
    ) -> None:
        run = transition.run
        user.runs[run.run_id] = run
        results: list[DeliveryResult] = []
        handlers = self._handlers
        for command in transition.commands:
            handler = handlers.get(type(command))
            if handler is not None:
                handler(user, command)
            elif isinstance(command, ScheduleMessage):
                self._take_slot(user, command.message, command.at, now)
                self.effects.message_scheduled(user, command)
            else:
                assert isinstance(command, Dispatch)
                # The cap slot is taken now, so later sends see it before it is delivered.
                self._take_slot(user, command.message, command.at, now)
                result = self.effects.dispatch(user, journey, run, command)
                if result is not None:
                    results.append(result)
        if run.active or goal_open(journey, run, now):
            self.effects.run_saved(user, run)
        else:
            del user.runs[run.run_id]
            self.effects.run_dropped(user, run)
        for result in results:
            self.delivered(user, run.run_id, result, now)

    def _fact(self, user: UserState, command: RunFact) -> None:
        self.effects.fact(user, FACT_NAMES[type(command)], command)

    def _cancel_timer(self, user: UserState, command: CancelTimer) -> None:
        self.effects.timer_cancelled(user, command.timer_id)

    def _suppressed(self, user: UserState, command: Suppressed) -> None:
        user.sent.pop(command.message.message_id, None)
        self.effects.suppressed(user, command)

    def _cancel_message(self, user: UserState, command: CancelMessage) -> None:
        user.sent.pop(command.message_id, None)
        self.effects.message_cancelled(user, command.message_id)

    def _take_slot(self, user: UserState, message: MessageRef, at: datetime, now: datetime) -> None:
        sent = user.sent
        sent[message.message_id] = SentMessage(message.channel, at)
        if self.memory_only:
            # Caps count messages within ``per`` of a send, which is never earlier than
            # now: the oldest slots (taken first) go once the longest cap has passed them.
            horizon = self.catalog.current.policies.cap_horizon
            expired = []
            for message_id, slot in sent.items():
                if now - slot.at < horizon:
                    break
                expired.append(message_id)
            for message_id in expired:
                del sent[message_id]
