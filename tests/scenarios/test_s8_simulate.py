"""Spec section 8: `journey simulate` — clock, ordering, --until, output, exit codes."""

from __future__ import annotations

import re

import pytest

PHONE = {"phone": "+15550100"}
AT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _wait_journey(p, wait: str, jid: str = "waiter", trigger: str = "Ping") -> None:
    p.journey(
        f"""
        id: {jid}
        name: {jid}
        trigger: {{event: {trigger}}}
        entry: {{re_entry: always}}
        start: pause
        steps:
          pause:
            wait: {wait}
            next: end
        """
    )


def test_every_line_has_type_and_utc_at_and_lines_are_in_time_order(p):
    p.template("t/hi.sms.j2", "Hi")
    p.journey(
        """
        id: drip
        name: Drip
        trigger: {event: Ping}
        goal: {event: Order Completed, within: 7d}
        exit_when:
          - event: Stop
        start: a
        steps:
          a:
            send: {channel: sms, template: t/hi}
            next: w
          w:
            wait: 1d
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u2", "Stop", "2026-03-01T15:00:00Z"),
            p.track("u2", "Ping", "2026-03-01T12:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T13:00:00Z"),
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    for ln in res.lines:
        assert AT_RE.match(ln["at"]), ln
        assert ln["type"] in {"entered", "message", "converted", "exited", "completed"}
    assert [(ln["type"], ln["user_id"], ln["at"]) for ln in res.lines] == [
        ("entered", "u1", "2026-03-01T10:00:00Z"),
        ("message", "u1", "2026-03-01T10:00:00Z"),
        ("entered", "u2", "2026-03-01T12:00:00Z"),
        ("message", "u2", "2026-03-01T12:00:00Z"),
        ("converted", "u1", "2026-03-01T13:00:00Z"),
        ("exited", "u2", "2026-03-01T15:00:00Z"),
        ("completed", "u1", "2026-03-02T10:00:00Z"),
    ]


def test_events_are_applied_in_timestamp_order_not_file_order(p):
    p.template("t/v.sms.j2", "{{ trigger.properties.v }}")
    p.journey(
        """
        id: once
        name: Once
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send: {channel: sms, template: t/v}
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T12:00:00Z", {"v": "late"}),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z", {"v": "early"}),
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["at"], m["content"]) for m in res.messages()] == [
        ("2026-03-01T10:00:00Z", {"text": "early"})
    ]


def test_equal_timestamps_keep_file_order(p):
    p.template("t/v.sms.j2", "{{ trigger.properties.v }}")
    p.journey(
        """
        id: once
        name: Once
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send: {channel: sms, template: t/v}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T10:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z", {"v": "one"}),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z", {"v": "two"}),
            # u2: the track comes before the identify in the file -> no phone yet
            p.track("u2", "Ping", "2026-03-01T10:00:00Z", {"v": "x"}),
            p.identify("u2", PHONE, "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["user_id"], m["status"], m["reason"], m["content"]) for m in res.messages()] == [
        ("u1", "sent", None, {"text": "one"}),
        ("u2", "suppressed", "no_address", res.messages()[1]["content"]),
    ]


def test_timestamps_with_offsets_are_reported_in_utc(p):
    _wait_journey(p, "1h")
    res = p.simulate([p.track("u1", "Ping", "2026-03-01T18:00:00+08:00")])
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("completed", "2026-03-01T11:00:00Z"),
    ]


@pytest.mark.parametrize(
    ("wait", "fires"),
    [
        ("29d", True),
        ("30d", True),  # last event + 30 days, inclusive
        ("30d1s", False),
        ("31d", False),
    ],
)
def test_default_until_is_last_event_plus_30_days(p, wait, fires):
    _wait_journey(p, wait)
    res = p.simulate(
        [
            p.track("u2", "Other", "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),  # the last event
        ]
    )
    assert res.code == 0, res.err
    completed = res.of("completed")
    assert bool(completed) is fires, res.lines


@pytest.mark.parametrize(
    ("until", "fires"),
    [
        ("2026-03-01T12:00:00Z", True),  # inclusive
        ("2026-03-01T11:59:59Z", False),
        ("2026-04-30T00:00:00Z", True),
    ],
)
def test_until_bounds_timers_inclusive(p, until, fires):
    _wait_journey(p, "2h")
    res = p.simulate([p.track("u1", "Ping", "2026-03-01T10:00:00Z")], until=until)
    assert res.code == 0, res.err
    assert (res.of("completed") != []) is fires
    if fires:
        assert [ln["at"] for ln in res.of("completed")] == ["2026-03-01T12:00:00Z"]


def test_until_can_extend_beyond_30_days(p):
    _wait_journey(p, "40d")
    res = p.simulate([p.track("u1", "Ping", "2026-03-01T10:00:00Z")], until="2026-04-10T10:00:00Z")
    assert [ln["at"] for ln in res.of("completed")] == ["2026-04-10T10:00:00Z"]


def test_until_before_the_last_event_still_applies_every_event(p):
    _wait_journey(p, "1h")
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u2", "Ping", "2026-03-01T12:00:00Z"),
        ],
        until="2026-03-01T10:30:00Z",
    )
    assert res.code == 0, res.err
    assert [(ln["type"], ln["user_id"], ln["at"]) for ln in res.lines] == [
        ("entered", "u1", "2026-03-01T10:00:00Z"),
        ("completed", "u1", "2026-03-01T11:00:00Z"),  # due before the 12:00 event
        ("entered", "u2", "2026-03-01T12:00:00Z"),
        # u2's timer (13:00) is after the last event and after --until: not fired
    ]


def test_compile_error_means_exit_1_and_nothing_simulated(p):
    _wait_journey(p, "1h", jid="good")
    p.journey(
        """
        id: broken
        name: Broken
        trigger: {event: Ping}
        start: nowhere
        steps:
          pause:
            wait: 1h
            next: end
        """
    )
    res = p.simulate([p.track("u1", "Ping", "2026-03-01T10:00:00Z")])
    assert res.code == 1
    assert res.out.strip() == ""
    assert "broken.yaml" in res.err


def test_policies_compile_error_means_nothing_simulated(p):
    _wait_journey(p, "1h")
    p.policies("timezone: Mars/Olympus_Mons\n")
    res = p.simulate([p.track("u1", "Ping", "2026-03-01T10:00:00Z")])
    assert res.code == 1
    assert res.out.strip() == ""
    assert "policies.yaml" in res.err


def test_missing_events_file_is_exit_1(p):
    _wait_journey(p, "1h")
    res = p.simulate(p.root / "no-such-file.jsonl")
    assert res.code == 1
    assert res.out.strip() == ""


def test_events_path_that_is_a_directory_is_exit_1(p):
    _wait_journey(p, "1h")
    d = p.root / "a_directory"
    d.mkdir()
    res = p.simulate(d)
    assert res.code == 1
    assert res.out.strip() == ""


def test_empty_events_file_is_fine(p):
    _wait_journey(p, "1h")
    path = p.root / "events.jsonl"
    path.write_text("", encoding="utf-8")
    res = p.simulate(path)
    assert res.code == 0, res.err
    assert res.lines == []


def test_stderr_summary_mentions_each_journey(p):
    _wait_journey(p, "1h", jid="first_journey")
    _wait_journey(p, "2h", jid="second_journey", trigger="Pong")
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u1", "Pong", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert "first_journey" in res.err
    assert "second_journey" in res.err
    assert not any(line.startswith("{") for line in res.err.splitlines())


def test_stdout_holds_only_json_lines(p):
    _wait_journey(p, "1h")
    res = p.simulate([p.track("u1", "Ping", "2026-03-01T10:00:00Z")])
    assert res.code == 0
    assert res.out.strip()
    for raw in res.out.splitlines():
        assert raw.startswith("{") and raw.endswith("}"), raw
