"""The pure journey runtime: ``advance`` decides, the caller carries out.

``enter`` starts a run and ``advance`` moves one run by one input (an event, a
fired timer or a delivery result). Both are pure: they read their arguments
only (the compiled journey, the run, the input, ``now``, the user's profile and
send history, the policies) and return the new run state plus a list of
commands. No I/O, no clock, no globals (channels were resolved when the journey
compiled): ``journey simulate``, the tests and the live workers run exactly this code.

Commands (defined in ``engine.runs``) tell the caller what to persist and do: facts
(:class:`Entered`, :class:`Converted`, :class:`Exited`, :class:`Completed`,
:class:`Suppressed`), manage timers (:class:`ScheduleTimer`,
:class:`CancelTimer`) and messages (:class:`ScheduleMessage` for a send
deferred by quiet hours, :class:`Dispatch` to render and deliver now,
:class:`CancelMessage`). After a :class:`Dispatch` the run waits on its send step
until the caller feeds back a :class:`DeliveryResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from engine.durations import next_local_time
from engine.errors import EngineError
from engine.graph import (
    END,
    BranchNode,
    CompiledJourney,
    EventMatcher,
    SendNode,
    SplitNode,
    WaitForNode,
    WaitNode,
)
from engine.policies import FALLBACK_REASONS, CompiledPolicies, Suppress
from engine.runs import (
    ACTIVE,
    COMPLETED,
    EXITED,
    UNDELIVERABLE,
    CancelMessage,
    CancelTimer,
    Command,
    Completed,
    Converted,
    DeliveryResult,
    Dispatch,
    Entered,
    EntryHistory,
    EventData,
    EventInput,
    Exited,
    Input,
    MessageRef,
    RunState,
    ScheduleMessage,
    ScheduleTimer,
    Suppressed,
    TimerFired,
    Transition,
    UserView,
    Waiting,
    make_message_id,
    split_bucket,
)

MAX_TRANSITIONS = 10_000


# -- scopes -----------------------------------------------------------------------


def scope(
    run: RunState, user: UserView, now: datetime, event: EventData | None = None
) -> dict[str, Any]:
    """The names conditions and templates see (format section 4).

    ``event`` is the run's latest moving event, or, inside a ``where``, the event
    being matched.
    """
    return {
        "profile": user.profile,
        "trigger": run.trigger,
        "event": run.event if event is None else event,
        "user_id": user.user_id,
        "now": now,
    }


def trigger_scope(event: EventData, user: UserView, now: datetime) -> dict[str, Any]:
    """The scope of a trigger's ``where``: the candidate event is both trigger and event."""
    return {
        "profile": user.profile,
        "trigger": event,
        "event": event,
        "user_id": user.user_id,
        "now": now,
    }


def _matches(
    matcher: EventMatcher, item: EventInput, make_scope: Callable[[], Mapping[str, Any]]
) -> bool:
    return matcher.matches(item.name, make_scope)


# -- entry ------------------------------------------------------------------------


def may_enter(
    journey: CompiledJourney,
    item: EventInput,
    now: datetime,
    user: UserView,
    history: EntryHistory,
    has_active_run: bool,
) -> bool:
    """Whether ``item`` starts a run of ``journey`` for ``user`` now (trigger, re-entry)."""
    if has_active_run or not journey.trigger.wants(item.name):
        return False
    if history.count:
        rule = journey.re_entry
        if rule.mode == "never":
            return False
        if rule.mode == "after":
            assert rule.after is not None and history.last_entered_at is not None
            if now - history.last_entered_at < rule.after:
                return False
    where = journey.trigger.where
    return where is None or where(trigger_scope(item.data, user, now))


def enter(
    journey: CompiledJourney,
    run_id: str,
    item: EventInput,
    now: datetime,
    user: UserView,
    policies: CompiledPolicies,
) -> Transition:
    """Start a run (the caller has checked :func:`may_enter`) and walk it to its first pause."""
    run = RunState(
        run_id=run_id,
        journey_id=journey.id,
        version=journey.version,
        user_id=user.user_id,
        entered_at=now,
        trigger=item.data,
        event=item.data,
    )
    walker = _Walker(journey, run, now, user, policies)
    walker.emit(Entered(run_id, journey.id, user.user_id, now))
    walker.goto(journey.start)
    return walker.result()


# -- advance ----------------------------------------------------------------------


def advance(
    journey: CompiledJourney,
    run: RunState,
    item: Input,
    now: datetime,
    user: UserView,
    policies: CompiledPolicies,
) -> Transition:
    """Apply one input to one run. Inputs that do not concern the run change nothing."""
    walker = _Walker(journey, run, now, user, policies)
    if isinstance(item, EventInput):
        walker.on_event(item)
    elif isinstance(item, TimerFired):
        walker.on_timer(item.timer_id)
    else:
        walker.on_delivery(item)
    return walker.result()


def goal_open(journey: CompiledJourney, run: RunState, now: datetime) -> bool:
    """Whether the run can still convert at ``now`` (the window outlives the run)."""
    return (
        journey.goal is not None
        and run.converted_at is None
        and now <= run.entered_at + journey.goal.within
    )


class _Walker:
    """Accumulates one transition. Private: the public surface is enter/advance.

    The run's changing fields are held as plain attributes while walking and the
    new RunState is built once at the end, or not at all when nothing changed:
    rebuilding a frozen dataclass per step dominated the simulator's profile.
    """

    __slots__ = (
        "commands",
        "converted_at",
        "ended_at",
        "event",
        "journey",
        "now",
        "own_visits",
        "policies",
        "run",
        "status",
        "step",
        "transitions",
        "user",
        "visits",
        "waiting",
    )

    def __init__(
        self,
        journey: CompiledJourney,
        run: RunState,
        now: datetime,
        user: UserView,
        policies: CompiledPolicies,
    ) -> None:
        self.journey = journey
        self.run = run
        self.now = now
        self.user = user
        self.policies = policies
        self.commands: list[Command] = []
        self.transitions = 0
        self.status = run.status
        self.step = run.step
        self.visits: Mapping[str, int] = run.visits
        self.own_visits = False  # visits is copied before the first change
        self.waiting = run.waiting
        self.event = run.event
        self.converted_at = run.converted_at
        self.ended_at = run.ended_at

    def emit(self, command: Command) -> None:
        self.commands.append(command)

    def result(self) -> Transition:
        run = self.run
        if (
            not self.commands
            and not self.own_visits
            and self.status == run.status
            and self.step == run.step
            and self.waiting == run.waiting
            and self.event is run.event
            and self.converted_at == run.converted_at
            and self.ended_at == run.ended_at
            and self.user.user_id == run.user_id
        ):
            return Transition(run, ())
        return Transition(
            RunState(
                run.run_id,
                run.journey_id,
                run.version,
                self.user.user_id,
                run.entered_at,
                run.trigger,
                self.event,
                self.status,
                self.step,
                self.visits,
                self.waiting,
                self.converted_at,
                self.ended_at,
            ),
            tuple(self.commands),
        )

    def fact(self, kind: type[Entered | Converted | Exited | Completed]) -> Command:
        return kind(self.run.run_id, self.run.journey_id, self.user.user_id, self.now)

    # -- inputs --

    def on_event(self, item: EventInput) -> None:
        run, journey = self.run, self.journey
        if item.message_id == run.trigger.get("messageId"):
            return  # the trigger never converts, exits or resumes its own run

        def candidate() -> dict[str, Any]:
            return scope(run, self.user, self.now, item.data)

        goal = journey.goal
        if goal and goal_open(journey, run, self.now) and _matches(goal.matcher, item, candidate):
            self.converted_at = self.now
            self.emit(self.fact(Converted))
        if not run.active:
            return
        for matcher in journey.exits:
            if _matches(matcher, item, candidate):
                self.end(EXITED)
                return
        waiting = self.waiting
        node = journey.nodes.get(self.step or "")
        if (
            waiting is not None
            and waiting.kind == "event"
            and isinstance(node, WaitForNode)
            and _matches(node.matcher, item, candidate)
        ):
            assert waiting.timer_id is not None
            self.emit(CancelTimer(waiting.timer_id))
            self.event = item.data
            self.waiting = None
            self.goto(node.on_event)

    def on_timer(self, timer_id: str) -> None:
        waiting = self.waiting
        if self.status != ACTIVE or waiting is None or waiting.timer_id != timer_id:
            return  # a stale timer: the run moved on or ended
        node = self.journey.nodes[self.step or ""]
        self.waiting = None
        if isinstance(node, WaitNode):
            self.goto(node.next)
        elif isinstance(node, WaitForNode):
            self.goto(node.on_timeout)
        elif isinstance(node, SendNode) and waiting.kind == "deferred":
            self.deliver_deferred(node, waiting)
        else:
            raise EngineError(f"timer {timer_id} fired on step {node.name} which sets no timer")

    def on_delivery(self, result: DeliveryResult) -> None:
        waiting = self.waiting
        if self.status != ACTIVE or waiting is None or waiting.message_id != result.message_id:
            return
        node = self.journey.nodes[self.step or ""]
        assert isinstance(node, SendNode)
        self.waiting = None
        next_step: str | None = node.next
        if result.outcome == UNDELIVERABLE and waiting.attempt + 1 < len(node.attempts):
            next_step = self.attempt(node, waiting.attempt + 1)
        if next_step is not None:
            self.goto(next_step)

    # -- movement --

    def end(self, status: str) -> None:
        waiting = self.waiting
        if waiting and waiting.timer_id:
            self.emit(CancelTimer(waiting.timer_id))
        if waiting and waiting.kind == "deferred" and waiting.message_id:
            self.emit(CancelMessage(waiting.message_id))
        self.status, self.step, self.waiting, self.ended_at = status, None, None, self.now
        self.emit(self.fact(Exited if status == EXITED else Completed))

    def goto(self, target: str) -> None:
        """Walk from ``target`` through steps that take no time, up to the next pause."""
        while True:
            self.transitions += 1
            if self.transitions > MAX_TRANSITIONS:
                raise EngineError(
                    f"run {self.run.run_id} looped {MAX_TRANSITIONS} times without pausing"
                )
            if target == END:
                self.end(COMPLETED)
                return
            node = self.journey.nodes[target]
            if self.own_visits:
                visits = self.visits
                assert isinstance(visits, dict)
            else:
                visits = dict(self.visits)
                self.own_visits = True
            visits[target] = visits.get(target, 0) + 1
            self.step, self.visits, self.waiting = target, visits, None
            if isinstance(node, WaitNode):
                self.pause_until(self.wait_due(node), "timer")
                return
            if isinstance(node, WaitForNode):
                self.pause_until(self.now + node.timeout, "event")
                return
            if isinstance(node, BranchNode):
                target = self.choose(node)
            elif isinstance(node, SplitNode):
                bucket = split_bucket(
                    self.user.user_id, self.journey.id, node.name, node.total_weight
                )
                for weight, arm in node.arms:
                    if bucket < weight:
                        target = arm
                        break
                    bucket -= weight
            else:
                next_step = self.attempt(node, 0)
                if next_step is None:
                    return
                target = next_step

    def wait_due(self, node: WaitNode) -> datetime:
        if node.delay is not None:
            return self.now + node.delay
        assert node.until is not None
        return next_local_time(self.now, node.until, self.policies.zone_for(self.user.profile))

    def pause_until(self, due: datetime, kind: Literal["timer", "event"]) -> None:
        step = self.step or ""
        timer_id = f"{self.run.run_id}/{step}/{self.visits.get(step, 0)}"
        self.waiting = Waiting(kind, timer_id=timer_id)
        self.emit(ScheduleTimer(timer_id, self.run.run_id, due))

    def choose(self, node: BranchNode) -> str:
        current = scope(self.run, self.user, self.now, self.event)
        for condition, target in node.cases:
            if condition(current):
                return target
        return node.otherwise

    def message(self, node: SendNode, attempt: int) -> MessageRef:
        channel = node.attempts[attempt].channel.name
        visit = self.visits.get(node.name, 0)
        return MessageRef(
            make_message_id(self.run.run_id, node.name, visit, channel),
            self.run.run_id,
            self.journey.id,
            self.user.user_id,
            node.name,
            channel,
            attempt,
        )

    def attempt(self, node: SendNode, attempt: int) -> str | None:
        """Try channels from ``attempt`` on. Returns the step to go to, or None when paused."""
        for index in range(attempt, len(node.attempts)):
            ref = self.message(node, index)
            decision = self.policies.decide(
                node.attempts[index].channel,
                self.user.profile,
                self.now,
                self.user.sent,
                ignore_frequency_cap=node.ignore_frequency_cap,
            )
            if isinstance(decision, Suppress):
                self.emit(Suppressed(ref, decision.reason, self.now))
                if decision.reason in FALLBACK_REASONS:
                    continue
                return node.next
            if decision.deferred:
                timer_id = f"{ref.message_id}/deliver"
                self.emit(ScheduleMessage(ref, decision.at))
                self.emit(ScheduleTimer(timer_id, self.run.run_id, decision.at))
                self.waiting = Waiting(
                    "deferred", timer_id=timer_id, message_id=ref.message_id, attempt=index
                )
                return None
            self.dispatch(ref, index)
            return None
        return node.next

    def dispatch(self, ref: MessageRef, index: int) -> None:
        self.emit(Dispatch(ref, self.now))
        self.waiting = Waiting("delivery", message_id=ref.message_id, attempt=index)

    def deliver_deferred(self, node: SendNode, waiting: Waiting) -> None:
        """Quiet hours are over. Consent and address are checked again (they may have
        changed overnight); the cap slot was taken when the send was deferred."""
        ref = self.message(node, waiting.attempt)
        refused = self.policies.consent(node.attempts[waiting.attempt].channel, self.user.profile)
        if refused is None:
            self.dispatch(ref, waiting.attempt)
            return
        self.emit(Suppressed(ref, refused.reason, self.now))
        next_step = (
            self.attempt(node, waiting.attempt + 1)
            if waiting.attempt + 1 < len(node.attempts)
            else node.next
        )
        if next_step is not None:
            self.goto(next_step)
