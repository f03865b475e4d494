"""``journey simulate``: the real runtime on a virtual clock, nothing sent (format section 8).

Events are applied in timestamp order (file order among equal timestamps); before
each event every timer due at or before it fires, in due order, then set order.
After the last event, timers keep firing up to ``until``. Every dispatch goes to
an in-memory sink that records it as sent. The trace is one JSON object per line.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.errors import RenderError
from engine.events import Event
from engine.graph import CompiledJourney
from engine.identity import IdentityMap, anonymous_key, display_id, merge_traits, user_key
from engine.messages import DEFAULT_PUBLIC_URL, address_of, render_message
from engine.policies import SentMessage
from engine.project import Project
from engine.runtime import (
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
    RunState,
    ScheduleMessage,
    ScheduleTimer,
    Suppressed,
    TimerFired,
    Transition,
    UserView,
    advance,
    enter,
    goal_open,
    make_run_id,
    may_enter,
)

TraceLine = dict[str, Any]


def iso(at: datetime) -> str:
    """ISO-8601 UTC with ``Z``."""
    text = at.isoformat(timespec="microseconds" if at.microsecond else "seconds")
    return text.replace("+00:00", "Z")


@dataclass
class UserState:
    """Everything the simulator knows of one user."""

    key: str
    profile: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, RunState] = field(default_factory=dict)
    entries: dict[str, EntryHistory] = field(default_factory=dict)
    sent: dict[str, SentMessage] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return display_id(self.key)

    def view(self) -> UserView:
        return UserView(self.user_id, self.profile, tuple(self.sent.values()))

    def active_run(self, journey_id: str) -> RunState | None:
        for run in self.runs.values():
            if run.journey_id == journey_id and run.active:
                return run
        return None


@dataclass
class Summary:
    """Counts per journey for the human summary."""

    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, journey_id: str, what: str) -> None:
        self.counts[journey_id][what] += 1


class Simulation:
    """Drives the pure runtime over events and timers, emitting trace lines."""

    def __init__(
        self,
        project: Project,
        emit: Callable[[TraceLine], None],
        public_url: str = DEFAULT_PUBLIC_URL,
    ) -> None:
        self.project = project
        self.emit = emit
        self.public_url = public_url
        self.users: dict[str, UserState] = {}
        self.identities = IdentityMap()
        self.timers: list[tuple[datetime, int, str]] = []
        self.timer_runs: dict[str, str] = {}
        self.run_owner: dict[str, str] = {}
        self.sequence = 0
        self.summary = Summary()

    # -- driving --

    def run(self, events: Iterable[Event], until: datetime | None = None) -> None:
        """Apply ``events`` (already in time order), then fire timers up to ``until``."""
        for event in events:
            self.fire_due(event.timestamp)
            self.apply(event)
        if until is not None:
            self.fire_due(until)

    def fire_due(self, moment: datetime) -> None:
        """Fire every live timer due at or before ``moment``, in (due, set) order."""
        timers = self.timers
        while timers and timers[0][0] <= moment:
            due, _, timer_id = heapq.heappop(timers)
            run_id = self.timer_runs.pop(timer_id, None)
            if run_id is None:
                continue  # cancelled
            user = self.users[self.run_owner[run_id]]
            run = user.runs.get(run_id)
            if run is not None:
                self.step(user, run, TimerFired(timer_id), due)

    def apply(self, event: Event) -> None:
        """Apply one event: identity and traits first, then runs, then triggers."""
        now = event.timestamp
        if event.type in ("identify", "alias"):
            self.identify(event)
            return
        if event.name is None or event.name not in self.project.by_event:
            return
        key = self.identities.resolve(event.user_id, event.anonymous_id)
        user = self.users.get(key) or self.users.setdefault(key, UserState(key))
        item = EventInput(event.name, event.data(), event.message_id)
        for run in list(user.runs.values()):
            journey = self.project.journeys[run.journey_id]
            if event.name in journey.listens_to and (run.active or goal_open(journey, run, now)):
                self.step(user, run, item, now)
        for journey in self.project.by_event[event.name]:
            if not journey.trigger.wants(event.name):
                continue
            history = user.entries.get(journey.id, EntryHistory())
            view = user.view()
            if may_enter(
                journey, item, now, view, history, user.active_run(journey.id) is not None
            ):
                number = history.count + 1
                user.entries[journey.id] = EntryHistory(number, now)
                run_id = make_run_id(journey.id, user.user_id, number)
                self.run_owner[run_id] = user.key
                self.carry_out(
                    user,
                    journey,
                    enter(journey, run_id, item, now, view, self.project.policies),
                    now,
                )

    def step(self, user: UserState, run: RunState, item: Input, now: datetime) -> None:
        journey = self.project.journeys[run.journey_id]
        transition = advance(journey, run, item, now, user.view(), self.project.policies)
        self.carry_out(user, journey, transition, now)

    # -- identity --

    def identify(self, event: Event) -> None:
        if event.type == "alias":
            # Segment's previousId is either an anonymousId or an earlier userId.
            assert event.user_id is not None and event.previous_id is not None
            self.link(anonymous_key(event.previous_id), user_key(event.user_id), event.timestamp)
            self.link(user_key(event.previous_id), user_key(event.user_id), event.timestamp)
            return
        if event.user_id is not None and event.anonymous_id is not None:
            self.link(anonymous_key(event.anonymous_id), user_key(event.user_id), event.timestamp)
        key = self.identities.resolve(event.user_id, event.anonymous_id)
        user = self.users.get(key) or self.users.setdefault(key, UserState(key))
        user.profile = merge_traits(user.profile, event.traits)

    def link(self, source: str, target: str, now: datetime) -> None:
        if not self.identities.link(source, target):
            return
        owner_key = self.identities.owner(target)
        gone = self.users.pop(source, None)
        if gone is None:
            return
        owner = self.users.get(owner_key) or self.users.setdefault(owner_key, UserState(owner_key))
        owner.profile = merge_traits(gone.profile, owner.profile)
        for run_id, run in gone.runs.items():
            if run.active and owner.active_run(run.journey_id) is not None:
                self.drop(run)  # the known user's own run wins
                continue
            owner.runs[run_id] = run
            self.run_owner[run_id] = owner.key
        for journey_id, theirs in gone.entries.items():
            mine = owner.entries.get(journey_id, EntryHistory())
            latest = max(
                (t for t in (mine.last_entered_at, theirs.last_entered_at) if t is not None),
                default=None,
            )
            owner.entries[journey_id] = EntryHistory(mine.count + theirs.count, latest)
        owner.sent.update(gone.sent)

    def drop(self, run: RunState) -> None:
        if run.waiting and run.waiting.timer_id:
            self.timer_runs.pop(run.waiting.timer_id, None)
        self.run_owner.pop(run.run_id, None)

    # -- commands --

    def carry_out(
        self, user: UserState, journey: CompiledJourney, transition: Transition, now: datetime
    ) -> None:
        run = transition.run
        user.runs[run.run_id] = run
        follow_up: list[DeliveryResult] = []
        for command in transition.commands:
            if isinstance(command, ScheduleTimer):
                self.sequence += 1
                heapq.heappush(self.timers, (command.due_at, self.sequence, command.timer_id))
                self.timer_runs[command.timer_id] = command.run_id
            elif isinstance(command, CancelTimer):
                self.timer_runs.pop(command.timer_id, None)
            elif isinstance(command, Dispatch):
                follow_up.append(self.dispatch(user, journey, run, command))
            elif isinstance(command, Suppressed):
                user.sent.pop(command.message.message_id, None)
                self.message_line(
                    user,
                    command.message.journey_id,
                    command.message.step,
                    command.message.channel,
                    "suppressed",
                    command.reason,
                    None,
                    now,
                )
            elif isinstance(command, ScheduleMessage):
                user.sent[command.message.message_id] = SentMessage(
                    command.message.channel, command.at
                )
            elif isinstance(command, CancelMessage):
                user.sent.pop(command.message_id, None)
            else:
                kind = {
                    Entered: "entered",
                    Converted: "converted",
                    Exited: "exited",
                    Completed: "completed",
                }[type(command)]
                self.summary.add(command.journey_id, kind)
                self.emit(
                    {
                        "type": kind,
                        "at": iso(now),
                        "journey": command.journey_id,
                        "user_id": user.user_id,
                    }
                )
        if not run.active and not goal_open(journey, run, now):
            del user.runs[run.run_id]
            self.run_owner.pop(run.run_id, None)
        for result in follow_up:
            current = user.runs.get(run.run_id)
            if current is not None:
                self.step(user, current, result, now)

    def dispatch(
        self, user: UserState, journey: CompiledJourney, run: RunState, command: Dispatch
    ) -> DeliveryResult:
        ref = command.message
        try:
            content = render_message(journey, ref, run, user.profile, command.at, self.public_url)
        except RenderError as exc:
            user.sent.pop(ref.message_id, None)
            self.message_line(
                user, ref.journey_id, ref.step, ref.channel, "failed", str(exc), None, command.at
            )
            return DeliveryResult(ref.message_id, "failed")
        user.sent[ref.message_id] = SentMessage(ref.channel, command.at)
        self.message_line(
            user, ref.journey_id, ref.step, ref.channel, "sent", None, content, command.at
        )
        return DeliveryResult(ref.message_id, "sent")

    def message_line(
        self,
        user: UserState,
        journey_id: str,
        step: str,
        channel: str,
        status: str,
        reason: str | None,
        content: dict[str, str] | None,
        at: datetime,
    ) -> None:
        self.summary.add(journey_id, f"{status}:{reason}" if status == "suppressed" else status)
        self.emit(
            {
                "type": "message",
                "at": iso(at),
                "journey": journey_id,
                "step": step,
                "user_id": user.user_id,
                "channel": channel,
                "to": address_of(channel, user.profile),
                "status": status,
                "reason": reason,
                "content": content,
            }
        )
