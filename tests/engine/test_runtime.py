"""The pure runtime, driven directly: enter/advance in, state and commands out."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.project import Project, compile_project
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
    RunState,
    ScheduleMessage,
    ScheduleTimer,
    Suppressed,
    TimerFired,
    Transition,
    UserView,
    make_message_id,
    split_bucket,
)
from engine.runtime import (
    advance,
    enter,
    may_enter,
)

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def project_of(
    tmp_path: Path, journey: str, policies: str = "", templates: dict[str, str] | None = None
) -> Project:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "j.yaml").write_text(textwrap.dedent(journey))
    if policies:
        (tmp_path / "journeys" / "policies.yaml").write_text(textwrap.dedent(policies))
    for name, text in (templates or {}).items():
        path = tmp_path / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return compile_project(tmp_path / "journeys")


def event(name: str, at: datetime, message_id: str = "m1", **properties: object) -> EventInput:
    data = {
        "type": "track",
        "event": name,
        "name": name,
        "properties": properties,
        "timestamp": at,
        "messageId": message_id,
    }
    return EventInput(name, data, message_id)


def user(**traits: object) -> UserView:
    return UserView("u1", traits)


def start(project: Project, at: datetime = T0, who: UserView | None = None) -> Transition:
    journey = project.journeys["j"]
    return enter(journey, "run1", event("Go", at), at, who or user(), project.policies)


WAITS = """
id: j
name: J
trigger: {event: Go}
exit_when: [{event: Stop}]
goal: {event: Buy, within: 2d}
start: pause
steps:
  pause: {wait: 1h, next: ask}
  ask:
    wait_for: {event: Answer, where: "event.properties.ok", timeout: 1d}
    on_event: end
    on_timeout: end
"""


def test_enter_schedules_the_first_wait(tmp_path: Path) -> None:
    result = start(project_of(tmp_path, WAITS))
    assert isinstance(result.commands[0], Entered)
    timer = result.commands[1]
    assert isinstance(timer, ScheduleTimer) and timer.due_at == T0 + timedelta(hours=1)
    assert result.run.step == "pause" and result.run.waiting is not None
    assert result.run.waiting.timer_id == timer.timer_id


def test_stale_timer_changes_nothing(tmp_path: Path) -> None:
    project = project_of(tmp_path, WAITS)
    run = start(project).run
    result = advance(
        project.journeys["j"], run, TimerFired("not-mine"), T0, user(), project.policies
    )
    assert result.commands == () and result.run == run


def test_wait_for_where_sees_the_candidate_event(tmp_path: Path) -> None:
    project = project_of(tmp_path, WAITS)
    journey = project.journeys["j"]
    run = start(project).run
    run = advance(
        journey,
        run,
        TimerFired(run.waiting.timer_id),
        T0 + timedelta(hours=1),
        user(),
        project.policies,
    ).run  # type: ignore[union-attr]
    assert run.step == "ask"
    later = T0 + timedelta(hours=2)
    ignored = advance(
        journey, run, event("Answer", later, "m2", ok=False), later, user(), project.policies
    )
    assert ignored.run.step == "ask" and ignored.commands == ()
    taken = advance(
        journey, run, event("Answer", later, "m3", ok=True), later, user(), project.policies
    )
    assert [type(c) for c in taken.commands] == [CancelTimer, Completed]
    assert taken.run.status == "completed" and taken.run.event["messageId"] == "m3"


def test_exit_cancels_the_pending_timer(tmp_path: Path) -> None:
    project = project_of(tmp_path, WAITS)
    run = start(project).run
    at = T0 + timedelta(minutes=5)
    result = advance(
        project.journeys["j"], run, event("Stop", at, "m2"), at, user(), project.policies
    )
    assert [type(c) for c in result.commands] == [CancelTimer, Exited]
    assert result.run.status == "exited" and result.run.ended_at == at


def test_goal_converts_once_even_after_the_run_ended(tmp_path: Path) -> None:
    project = project_of(tmp_path, WAITS)
    journey = project.journeys["j"]
    run = start(project).run
    at = T0 + timedelta(minutes=5)
    ended = advance(journey, run, event("Stop", at, "m2"), at, user(), project.policies).run
    at2 = T0 + timedelta(days=2)  # the window is inclusive
    converted = advance(journey, ended, event("Buy", at2, "m3"), at2, user(), project.policies)
    assert [type(c) for c in converted.commands] == [Converted]
    again = advance(journey, converted.run, event("Buy", at2, "m4"), at2, user(), project.policies)
    assert again.commands == ()


def test_goal_window_closes(tmp_path: Path) -> None:
    project = project_of(tmp_path, WAITS)
    run = start(project).run
    late = T0 + timedelta(days=2, seconds=1)
    result = advance(
        project.journeys["j"], run, event("Buy", late, "m2"), late, user(), project.policies
    )
    assert not any(isinstance(c, Converted) for c in result.commands)


def test_trigger_event_never_moves_its_own_run(tmp_path: Path) -> None:
    project = project_of(
        tmp_path, WAITS.replace("exit_when: [{event: Stop}]", "exit_when: [{event: Go}]")
    )
    run = start(project).run
    same = advance(project.journeys["j"], run, event("Go", T0, "m1"), T0, user(), project.policies)
    assert same.commands == () and same.run.active


REENTRY = """
id: j
name: J
trigger: {event: Go, where: "trigger.properties.n > 1"}
entry: {re_entry: "after 2d"}
start: s
steps:
  s: {wait: 1h, next: end}
"""


@pytest.mark.parametrize(
    ("history", "active", "n", "expected"),
    [
        (EntryHistory(), False, 2, True),
        (EntryHistory(), False, 1, False),  # the trigger's where
        (EntryHistory(), True, 2, False),  # one active run at a time
        (EntryHistory(1, T0 - timedelta(days=1)), False, 2, False),
        (EntryHistory(1, T0 - timedelta(days=2)), False, 2, True),
    ],
)
def test_may_enter(
    tmp_path: Path, history: EntryHistory, active: bool, n: int, expected: bool
) -> None:
    project = project_of(tmp_path, REENTRY)
    item = event("Go", T0, n=n)
    assert may_enter(project.journeys["j"], item, T0, user(), history, active) is expected


SEND = """
id: j
name: J
trigger: {event: Go}
start: hello
steps:
  hello:
    send: {channel: wecom, template: t/hi, fallback: [sms]}
    next: end
"""
TEMPLATES = {
    "t/hi.wecom.j2": "Hi {{ profile.name }}",
    "t/hi.sms.j2": "【Acme】Hi {{ profile.name }} 回T退订",
}


def test_send_dispatches_then_waits_for_the_delivery_result(tmp_path: Path) -> None:
    project = project_of(tmp_path, SEND, templates=TEMPLATES)
    who = user(name="Li", wecom_userid="w1", phone="+86138")
    result = start(project, who=who)
    dispatch = result.commands[-1]
    assert isinstance(dispatch, Dispatch) and dispatch.message.channel == "wecom"
    assert dispatch.message.message_id == make_message_id("run1", "hello", 1, "wecom")
    assert result.run.waiting is not None and result.run.waiting.kind == "delivery"
    done = advance(
        project.journeys["j"],
        result.run,
        DeliveryResult(dispatch.message.message_id, "sent"),
        T0,
        who,
        project.policies,
    )
    assert [type(c) for c in done.commands] == [Completed]


def test_undeliverable_falls_back_but_render_failure_does_not(tmp_path: Path) -> None:
    project = project_of(tmp_path, SEND, templates=TEMPLATES)
    journey = project.journeys["j"]
    who = user(name="Li", wecom_userid="w1", phone="+86138")
    run = start(project, who=who).run
    first = run.waiting.message_id  # type: ignore[union-attr]
    fallback = advance(
        journey, run, DeliveryResult(first, "undeliverable"), T0, who, project.policies
    )
    dispatch = fallback.commands[-1]
    assert isinstance(dispatch, Dispatch) and dispatch.message.channel == "sms"
    failed = advance(journey, run, DeliveryResult(first, "failed"), T0, who, project.policies)
    assert [type(c) for c in failed.commands] == [Completed]


def test_no_address_falls_back_in_the_same_transition(tmp_path: Path) -> None:
    project = project_of(tmp_path, SEND, templates=TEMPLATES)
    result = start(project, who=user(name="Li", phone="+86138"))
    kinds = [type(c) for c in result.commands]
    assert kinds == [Entered, Suppressed, Dispatch]
    assert result.commands[1].reason == "no_address"  # type: ignore[union-attr]


QUIET = """
timezone: Asia/Shanghai
quiet_hours: {start: "21:00", end: "08:00"}
"""


def test_quiet_hours_defer_then_deliver_rechecks_consent(tmp_path: Path) -> None:
    project = project_of(tmp_path, SEND, QUIET, TEMPLATES)
    journey = project.journeys["j"]
    night = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    who = user(name="Li", wecom_userid="w1", phone="+86138")
    deferred = start(project, at=night, who=who)
    scheduled = [c for c in deferred.commands if isinstance(c, ScheduleMessage)]
    morning = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    assert len(scheduled) == 1 and scheduled[0].at == morning
    timer = deferred.run.waiting.timer_id  # type: ignore[union-attr]
    unsubscribed = user(
        name="Li", wecom_userid="w1", phone="+86138", subscriptions={"wecom": False}
    )
    result = advance(
        journey, deferred.run, TimerFired(timer), morning, unsubscribed, project.policies
    )
    kinds = [type(c) for c in result.commands]
    assert kinds == [Suppressed, Dispatch]  # wecom refused overnight, so sms now
    assert result.commands[1].message.channel == "sms"  # type: ignore[union-attr]


def test_exit_during_deferral_cancels_the_message(tmp_path: Path) -> None:
    project = project_of(
        tmp_path,
        SEND.replace("start: hello", "exit_when: [{event: Stop}]\nstart: hello"),
        QUIET,
        TEMPLATES,
    )
    night = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
    deferred = start(project, at=night, who=user(wecom_userid="w1", name="Li"))
    stop = night + timedelta(hours=1)
    result = advance(
        project.journeys["j"],
        deferred.run,
        event("Stop", stop, "m2"),
        stop,
        user(),
        project.policies,
    )
    assert [type(c) for c in result.commands] == [CancelTimer, CancelMessage, Exited]


def test_split_bucket_is_stable_and_in_range() -> None:
    buckets = {split_bucket(f"u{i}", "j", "s", 10) for i in range(200)}
    assert buckets <= set(range(10)) and len(buckets) == 10
    assert split_bucket("u1", "j", "s", 10) == split_bucket("u1", "j", "s", 10)


def test_runstate_is_immutable(tmp_path: Path) -> None:
    run = start(project_of(tmp_path, WAITS)).run
    with pytest.raises(AttributeError):
        run.step = "x"  # type: ignore[misc]
    assert isinstance(run, RunState)
