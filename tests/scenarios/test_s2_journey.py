"""Spec section 2: a journey — trigger, entry / re_entry, exit_when, goal, ordering."""

from __future__ import annotations

PHONE = {"phone": "+15550100"}


def test_trigger_starts_a_run_and_trace_lines_have_the_spec_shape(p):
    p.template("t/hi.sms.j2", "Hi")
    p.journey(
        """
        id: welcome
        name: Welcome series
        description: says hi
        trigger:
          event: Signed Up
        start: hello
        steps:
          hello:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Signed Up", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.lines[0] == {
        "type": "entered",
        "at": "2026-03-01T10:00:00Z",
        "journey": "welcome",
        "user_id": "u1",
    }
    msg = res.lines[1]
    expected = {
        "type": "message",
        "at": "2026-03-01T10:00:00Z",
        "journey": "welcome",
        "step": "hello",
        "user_id": "u1",
        "channel": "sms",
        "to": "+15550100",
        "status": "sent",
        "reason": None,
        "content": {"text": "Hi"},
    }
    assert {k: msg.get(k, "<missing>") for k in expected} == expected
    assert res.lines[2] == {
        "type": "completed",
        "at": "2026-03-01T10:00:00Z",
        "journey": "welcome",
        "user_id": "u1",
    }
    assert len(res.lines) == 3


def test_a_non_matching_event_starts_nothing(p):
    p.template("t/hi.sms.j2", "Hi")
    p.journey(
        """
        id: welcome
        name: Welcome
        trigger: {event: Signed Up}
        start: hello
        steps:
          hello:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate([p.track("u1", "Signed In", "2026-03-01T10:00:00Z")])
    assert res.code == 0, res.err
    assert res.lines == []


def test_trigger_where_filters_on_trigger_properties(p):
    p.journey(
        """
        id: big_cart
        name: Big cart
        trigger:
          event: Product Added
          where: "trigger.properties.price >= 50"
        entry: {re_entry: always}
        start: pause
        steps:
          pause:
            wait: 1m
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z", {"price": 30}),
            p.track("u1", "Product Added", "2026-03-01T11:00:00Z", {"price": 50}),
            p.track("u2", "Product Added", "2026-03-01T12:00:00Z", {"price": 49.99}),
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["user_id"], ln["at"]) for ln in res.of("entered")] == [
        ("u1", "2026-03-01T11:00:00Z")
    ]


def test_trigger_event_may_be_a_list_of_names(p):
    p.journey(
        """
        id: shoppers
        name: Shoppers
        trigger:
          event: [Product Added, Checkout Started]
        entry: {re_entry: always}
        start: pause
        steps:
          pause:
            wait: 1m
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u2", "Checkout Started", "2026-03-01T10:00:00Z"),
            p.track("u3", "Order Completed", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert sorted(ln["user_id"] for ln in res.of("entered")) == ["u1", "u2"]


def test_one_active_run_per_user_per_journey(p):
    p.journey(
        """
        id: slow
        name: Slow
        trigger: {event: Ping}
        entry: {re_entry: always}
        start: pause
        steps:
          pause:
            wait: 1h
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:30:00Z"),  # run still active
            p.track("u2", "Ping", "2026-03-01T10:30:00Z"),  # another user: own run
            p.track("u1", "Ping", "2026-03-01T11:30:00Z"),  # previous run ended at 11:00
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["user_id"], ln["at"]) for ln in res.of("entered")] == [
        ("u1", "2026-03-01T10:00:00Z"),
        ("u2", "2026-03-01T10:30:00Z"),
        ("u1", "2026-03-01T11:30:00Z"),
    ]
    assert [(ln["user_id"], ln["at"]) for ln in res.of("completed")] == [
        ("u1", "2026-03-01T11:00:00Z"),
        ("u2", "2026-03-01T11:30:00Z"),
        ("u1", "2026-03-01T12:30:00Z"),
    ]


def test_re_entry_defaults_to_never(p):
    p.journey(
        """
        id: once
        name: Once
        trigger: {event: Ping}
        start: pause
        steps:
          pause:
            wait: 1m
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u1", "Ping", "2026-03-02T10:00:00Z"),
            p.track("u1", "Ping", "2026-03-20T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [ln["at"] for ln in res.of("entered")] == ["2026-03-01T10:00:00Z"]


def test_re_entry_never_explicit(p):
    p.journey(
        """
        id: once
        name: Once
        trigger: {event: Ping}
        entry: {re_entry: never}
        start: pause
        steps:
          pause:
            wait: 1m
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u1", "Ping", "2026-03-05T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [ln["at"] for ln in res.of("entered")] == ["2026-03-01T10:00:00Z"]


def test_re_entry_always_enters_again_once_the_previous_run_ended(p):
    p.journey(
        """
        id: again
        name: Again
        trigger: {event: Ping}
        entry: {re_entry: always}
        start: pause
        steps:
          pause:
            wait: 1h
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:59:59Z"),  # still active: blocked
            p.track("u1", "Ping", "2026-03-01T11:00:00Z"),  # timer at 11:00 fires first
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("completed", "2026-03-01T11:00:00Z"),
        ("entered", "2026-03-01T11:00:00Z"),
        ("completed", "2026-03-01T12:00:00Z"),
    ]


def test_re_entry_after_duration_counts_from_previous_entry_not_blocked_attempts(p):
    p.journey(
        """
        id: spaced
        name: Spaced
        trigger: {event: Ping}
        entry:
          re_entry: after 2h
        start: pause
        steps:
          pause:
            wait: 1m
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),  # enters
            p.track("u1", "Ping", "2026-03-01T11:00:00Z"),  # blocked (1h since entry)
            p.track("u1", "Ping", "2026-03-01T12:00:00Z"),  # enters: 2h since 10:00 entry
            p.track("u1", "Ping", "2026-03-01T13:30:00Z"),  # blocked (1h30m)
            p.track("u1", "Ping", "2026-03-01T14:00:00Z"),  # enters
        ]
    )
    assert res.code == 0, res.err
    assert [ln["at"] for ln in res.of("entered")] == [
        "2026-03-01T10:00:00Z",
        "2026-03-01T12:00:00Z",
        "2026-03-01T14:00:00Z",
    ]


def test_re_entry_after_duration_still_needs_the_previous_run_to_have_ended(p):
    p.journey(
        """
        id: spaced
        name: Spaced
        trigger: {event: Ping}
        entry: {re_entry: after 1h}
        start: pause
        steps:
          pause:
            wait: 3h
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T11:30:00Z"),  # 1h passed but run active
            p.track("u1", "Ping", "2026-03-01T13:00:00Z"),  # completes at 13:00 first
        ]
    )
    assert res.code == 0, res.err
    assert [ln["at"] for ln in res.of("entered")] == [
        "2026-03-01T10:00:00Z",
        "2026-03-01T13:00:00Z",
    ]


def test_exit_when_ends_the_run_and_cancels_its_timers(p):
    p.template("t/hi.sms.j2", "Come back")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        exit_when:
          - event: Order Completed
        start: pause
        steps:
          pause:
            wait: 1d
            next: nudge
          nudge:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T12:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.lines == [
        {"type": "entered", "at": "2026-03-01T10:00:00Z", "journey": "cart", "user_id": "u1"},
        {"type": "exited", "at": "2026-03-01T12:00:00Z", "journey": "cart", "user_id": "u1"},
    ]


def test_exit_when_where_and_event_list(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        entry: {re_entry: always}
        exit_when:
          - event: Order Completed
            where: "event.properties.total > 100"
          - event: [Account Deleted, Unsubscribed]
        start: pause
        steps:
          pause:
            wait: 1d
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T11:00:00Z", {"total": 20}),
            p.track("u1", "Order Completed", "2026-03-01T12:00:00Z", {"total": 150}),
            p.track("u2", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u2", "Unsubscribed", "2026-03-01T13:00:00Z"),
            p.track("u3", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u3", "Account Deleted", "2026-03-01T14:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["user_id"], ln["at"]) for ln in res.of("exited")] == [
        ("u1", "2026-03-01T12:00:00Z"),
        ("u2", "2026-03-01T13:00:00Z"),
        ("u3", "2026-03-01T14:00:00Z"),
    ]
    assert res.of("completed") == []


def test_exit_when_cancels_a_pending_wait_for(p):
    p.template("t/a.sms.j2", "timed out")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        exit_when:
          - event: Cancelled
        start: waiting
        steps:
          waiting:
            wait_for: {event: Checkout Started, timeout: 2h}
            on_event: end
            on_timeout: nudge
          nudge:
            send: {channel: sms, template: t/a}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Cancelled", "2026-03-01T11:00:00Z"),
            p.track("u1", "Checkout Started", "2026-03-01T11:30:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("exited", "2026-03-01T11:00:00Z"),
    ]


GOAL_JOURNEY = """
id: cart
name: Cart
trigger: {event: Product Added}
goal:
  event: Order Completed
  within: 1d
start: pause
steps:
  pause:
    wait: 1h
    next: end
"""


def test_goal_converts_once_even_after_the_run_completed(p):
    p.journey(GOAL_JOURNEY)
    res = p.simulate(
        [
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T15:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T16:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.lines == [
        {"type": "entered", "at": "2026-03-01T10:00:00Z", "journey": "cart", "user_id": "u1"},
        {"type": "completed", "at": "2026-03-01T11:00:00Z", "journey": "cart", "user_id": "u1"},
        {"type": "converted", "at": "2026-03-01T15:00:00Z", "journey": "cart", "user_id": "u1"},
    ]


def test_goal_window_is_inclusive(p):
    p.journey(GOAL_JOURNEY)
    res = p.simulate(
        [
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-02T10:00:00Z"),  # exactly 1d later
        ]
    )
    assert res.code == 0, res.err
    assert [ln["at"] for ln in res.of("converted")] == ["2026-03-02T10:00:00Z"]


def test_goal_after_the_window_does_not_convert(p):
    p.journey(GOAL_JOURNEY)
    res = p.simulate(
        [
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-02T10:00:01Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.of("converted") == []


def test_goal_converts_after_the_run_exited(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        exit_when:
          - event: Cart Emptied
        goal:
          event: [Order Completed, Subscription Started]
          within: 7d
        start: pause
        steps:
          pause:
            wait: 2d
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Cart Emptied", "2026-03-01T11:00:00Z"),
            p.track("u1", "Subscription Started", "2026-03-05T09:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("exited", "2026-03-01T11:00:00Z"),
        ("converted", "2026-03-05T09:00:00Z"),
    ]


def test_goal_does_not_end_the_run(p):
    p.template("t/hi.sms.j2", "Thanks")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        goal: {event: Order Completed, within: 7d}
        start: pause
        steps:
          pause:
            wait: 1h
            next: thanks
          thanks:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T10:30:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("converted", "2026-03-01T10:30:00Z"),
        ("message", "2026-03-01T11:00:00Z"),
        ("completed", "2026-03-01T11:00:00Z"),
    ]
    assert res.messages()[0]["status"] == "sent"


def test_trigger_event_never_converts_its_own_run(p):
    p.journey(
        """
        id: repeat_buyer
        name: Repeat buyer
        trigger: {event: Order Completed}
        goal: {event: Order Completed, within: 30d}
        start: pause
        steps:
          pause:
            wait: 1d
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Order Completed", "2026-03-01T10:00:00Z"),
            p.track("u2", "Order Completed", "2026-03-01T10:00:00Z"),
            p.track("u2", "Order Completed", "2026-03-03T10:00:00Z"),  # second order converts
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["user_id"], ln["at"]) for ln in res.of("converted")] == [
        ("u2", "2026-03-03T10:00:00Z")
    ]


def test_trigger_event_never_exits_its_own_run(p):
    p.journey(
        """
        id: ping
        name: Ping
        trigger: {event: Ping}
        exit_when:
          - event: Ping
        start: pause
        steps:
          pause:
            wait: 1h
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u2", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u2", "Ping", "2026-03-01T10:30:00Z"),  # a later Ping does exit
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["user_id"], ln["at"]) for ln in res.of("completed")] == [
        ("u1", "2026-03-01T11:00:00Z")
    ]
    assert [(ln["user_id"], ln["at"]) for ln in res.of("exited")] == [
        ("u2", "2026-03-01T10:30:00Z")
    ]


def test_trigger_event_never_resumes_its_own_wait_for(p):
    p.template("t/got.sms.j2", "got it")
    p.template("t/late.sms.j2", "timed out")
    p.journey(
        """
        id: ping
        name: Ping
        trigger: {event: Ping}
        start: waiting
        steps:
          waiting:
            wait_for: {event: Ping, timeout: 1h}
            on_event: got
            on_timeout: late
          got:
            send: {channel: sms, template: t/got}
            next: end
          late:
            send: {channel: sms, template: t/late}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    msgs = res.messages()
    assert [(m["step"], m["at"], m["content"]) for m in msgs] == [
        ("late", "2026-03-01T11:00:00Z", {"text": "timed out"})
    ]


def test_goal_is_checked_before_exit_when_for_the_same_event(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        exit_when:
          - event: Order Completed
        goal: {event: Order Completed, within: 7d}
        start: pause
        steps:
          pause:
            wait: 1d
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T12:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("converted", "2026-03-01T12:00:00Z"),
        ("exited", "2026-03-01T12:00:00Z"),
    ]


def test_exit_when_wins_over_a_pending_wait_for_on_the_same_event(p):
    p.template("t/got.sms.j2", "got it")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        exit_when:
          - event: Order Completed
        start: waiting
        steps:
          waiting:
            wait_for: {event: Order Completed, timeout: 1d}
            on_event: got
            on_timeout: end
          got:
            send: {channel: sms, template: t/got}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T12:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("exited", "2026-03-01T12:00:00Z"),
    ]


def test_an_event_that_exits_a_run_starts_a_new_one_when_re_entry_always(p):
    p.journey(
        """
        id: browse
        name: Browse
        trigger: {event: Product Viewed}
        entry: {re_entry: always}
        exit_when:
          - event: Product Viewed
        start: pause
        steps:
          pause:
            wait: 1d
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Product Viewed", "2026-03-01T10:00:00Z"),
            p.track("u1", "Product Viewed", "2026-03-01T10:30:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("exited", "2026-03-01T10:30:00Z"),
        ("entered", "2026-03-01T10:30:00Z"),
        ("completed", "2026-03-02T10:30:00Z"),
    ]


def test_an_event_that_exits_a_run_does_not_restart_it_when_re_entry_never(p):
    p.journey(
        """
        id: browse
        name: Browse
        trigger: {event: Product Viewed}
        exit_when:
          - event: Product Viewed
        start: pause
        steps:
          pause:
            wait: 1d
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Product Viewed", "2026-03-01T10:00:00Z"),
            p.track("u1", "Product Viewed", "2026-03-01T10:30:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("exited", "2026-03-01T10:30:00Z"),
    ]


def test_journey_name_and_description_may_be_any_language(p):
    p.template("t/hi.sms.j2", "你好")
    p.journey(
        """
        id: welcome_cn
        name: 欢迎新用户 — «bienvenue»
        description: 发送欢迎短信
        trigger: {event: Signed Up}
        start: hello
        steps:
          hello:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    assert p.validate().code == 0
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Signed Up", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.messages()[0]["content"] == {"text": "你好"}


def test_exit_when_where_sees_the_incoming_event_and_the_runs_trigger(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        exit_when:
          - event: Order Completed
            where: "event.properties.sku == trigger.properties.sku"
        start: pause
        steps:
          pause:
            wait: 1d
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z", {"sku": "A1"}),
            p.track("u1", "Order Completed", "2026-03-01T11:00:00Z", {"sku": "B2"}),
            p.track("u1", "Order Completed", "2026-03-01T12:00:00Z", {"sku": "A1"}),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("exited", "2026-03-01T12:00:00Z"),
    ]


def test_an_event_that_completes_a_run_via_wait_for_starts_a_new_one_when_re_entry_always(p):
    p.journey(
        """
        id: pings
        name: Pings
        trigger: {event: Ping}
        entry: {re_entry: always}
        start: waiting
        steps:
          waiting:
            wait_for: {event: Ping, timeout: 1h}
            on_event: end
            on_timeout: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:30:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("completed", "2026-03-01T10:30:00Z"),
        ("entered", "2026-03-01T10:30:00Z"),
        ("completed", "2026-03-01T11:30:00Z"),  # the new run is not resumed by its trigger
    ]


def test_a_loop_through_a_wait_sends_each_visit_with_its_own_message_id(p):
    p.template("t/remind.sms.j2", "{{ message_id }}")
    p.journey(
        """
        id: remind
        name: Remind
        trigger: {event: Trial Started}
        start: remind
        steps:
          remind:
            send: {channel: sms, template: t/remind}
            next: pause
          pause:
            wait: 1d
            next: check
          check:
            branch:
              - when: "profile.activated"
                next: end
              - else: remind
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Trial Started", "2026-03-01T10:00:00Z"),
            p.identify("u1", {"activated": True}, "2026-03-03T12:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    msgs = res.messages()
    assert [m["at"] for m in msgs] == [
        "2026-03-01T10:00:00Z",
        "2026-03-02T10:00:00Z",
        "2026-03-03T10:00:00Z",
    ]
    assert len({m["content"]["text"] for m in msgs}) == 3
    assert [ln["at"] for ln in res.of("completed")] == ["2026-03-04T10:00:00Z"]
