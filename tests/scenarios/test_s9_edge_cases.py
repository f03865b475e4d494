"""Spec section 9: settled edge cases — ordering, deferred sends, caps on deferral."""

from __future__ import annotations

PHONE = {"phone": "+15550100"}
ADDR = {**PHONE, "email": "u1@example.com"}


# --- order --------------------------------------------------------------------------------


def test_timers_due_at_the_same_instant_fire_in_the_order_they_were_set(p):
    p.template("t/hi.sms.j2", "Hi")
    p.journey(
        """
        id: drip
        name: Drip
        trigger: {event: Ping}
        start: pause
        steps:
          pause:
            wait: 1h
            next: hi
          hi:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    # zed's timer is set at 10:00 and amy's at 11:00; both are due at 12:00.
    p.journey(
        """
        id: drip2
        name: Drip 2
        trigger: {event: Pong}
        start: pause
        steps:
          pause:
            wait: 2h
            next: hi
          hi:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("zed", PHONE, "2026-03-01T09:00:00Z"),
            p.identify("amy", PHONE, "2026-03-01T09:00:00Z"),
            p.track("zed", "Pong", "2026-03-01T10:00:00Z"),  # timer set 10:00, due 12:00
            p.track("amy", "Ping", "2026-03-01T11:00:00Z"),  # timer set 11:00, due 12:00
        ]
    )
    assert res.code == 0, res.err
    assert [(m["user_id"], m["journey"], m["at"]) for m in res.messages()] == [
        ("zed", "drip2", "2026-03-01T12:00:00Z"),
        ("amy", "drip", "2026-03-01T12:00:00Z"),
    ]


def test_same_instant_timers_for_one_journey_keep_set_order(p):
    p.template("t/hi.sms.j2", "Hi")
    p.journey(
        """
        id: morning
        name: Morning
        trigger: {event: Ping}
        start: pause
        steps:
          pause:
            wait: {until: "10:00"}
            next: hi
          hi:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    users = ["mia", "zoe", "abe", "kim"]
    events = [p.identify(u, PHONE, "2026-03-01T09:00:00Z") for u in users]
    events += [p.track(u, "Ping", f"2026-03-01T1{i + 1}:00:00Z") for i, u in enumerate(users)]
    res = p.simulate(events)
    assert [m["user_id"] for m in res.messages()] == users
    assert {m["at"] for m in res.messages()} == {"2026-03-02T10:00:00Z"}


def test_a_timer_due_at_an_events_time_fires_before_it(p):
    p.template("t/got.sms.j2", "got")
    p.template("t/late.sms.j2", "late")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: waiting
        steps:
          waiting:
            wait_for: {event: Checkout Started, timeout: 1h}
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
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Checkout Started", "2026-03-01T11:00:00Z"),  # == timeout instant
        ]
    )
    assert res.code == 0, res.err
    assert [(m["step"], m["at"]) for m in res.messages()] == [("late", "2026-03-01T11:00:00Z")]


def test_goal_window_end_and_event_at_the_same_instant_still_converts(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        goal: {event: Order Completed, within: 2h}
        start: pause
        steps:
          pause:
            wait: 2h
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T12:00:00Z"),
        ]
    )
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("completed", "2026-03-01T12:00:00Z"),  # timer at 12:00 fires before the event
        ("converted", "2026-03-01T12:00:00Z"),  # window inclusive, outlives the run
    ]


def _waiting_journey(p, jid: str, trigger: str) -> None:
    p.journey(
        f"""
        id: {jid}
        name: {jid}
        trigger: {{event: {trigger}}}
        start: waiting
        steps:
          waiting:
            wait_for: {{event: Go, timeout: 1d}}
            on_event: say
            on_timeout: end
          say:
            send: {{channel: sms, content: {{text: "{jid}"}}}}
            next: end
        """
    )


def test_active_runs_move_in_the_order_they_entered(p):
    _waiting_journey(p, "zeta", "Start Z")
    _waiting_journey(p, "alpha", "Start A")
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Start Z", "2026-03-01T09:00:00Z"),
            p.track("u1", "Start A", "2026-03-01T09:30:00Z"),
            p.track("u1", "Go", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [m["journey"] for m in res.messages()] == ["zeta", "alpha"]


def test_active_runs_move_before_triggers_then_triggers_in_journey_id_order(p):
    _waiting_journey(p, "mid_waiting", "Start")
    for jid in ("zz_trigger", "aa_trigger"):
        p.journey(
            f"""
            id: {jid}
            name: {jid}
            trigger: {{event: Go}}
            start: say
            steps:
              say:
                send: {{channel: sms, content: {{text: "{jid}"}}}}
                next: end
            """,
            filename=f"{jid[::-1]}.yaml",  # file names deliberately not in id order
        )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Start", "2026-03-01T09:00:00Z"),
            p.track("u1", "Go", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [
        (ln["type"], ln["journey"]) for ln in res.lines if ln["at"] == "2026-03-01T10:00:00Z"
    ] == [
        ("message", "mid_waiting"),
        ("completed", "mid_waiting"),
        ("entered", "aa_trigger"),
        ("message", "aa_trigger"),
        ("completed", "aa_trigger"),
        ("entered", "zz_trigger"),
        ("message", "zz_trigger"),
        ("completed", "zz_trigger"),
    ]


# --- deferred sends --------------------------------------------------------------------

QUIET_SMS = 'quiet_hours: {start: "21:00", end: "08:00", channels: [sms], action: defer}\n'


def test_exit_while_a_send_is_deferred_cancels_it(p):
    p.policies(QUIET_SMS)
    p.template("t/hi.sms.j2", "Hi")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        exit_when:
          - event: Order Completed
        start: a
        steps:
          a:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T22:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T23:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T22:00:00Z"),
        ("exited", "2026-03-01T23:00:00Z"),
    ]


def test_deferred_send_is_rendered_at_delivery_time(p):
    p.policies(QUIET_SMS)
    p.template("t/hi.sms.j2", "{{ profile.first_name }} {{ now.hour }}")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: a
        steps:
          a:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, "first_name": "Old"}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T22:00:00Z"),
            p.identify("u1", {"first_name": "New"}, "2026-03-01T23:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["at"], m["status"], m["content"]) for m in res.messages()] == [
        ("2026-03-02T08:00:00Z", "sent", {"text": "New 8"})
    ]
    assert [ln["at"] for ln in res.of("completed")] == ["2026-03-02T08:00:00Z"]


def test_a_deferred_run_still_converts(p):
    p.policies(QUIET_SMS)
    p.template("t/hi.sms.j2", "Hi")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        goal: {event: Order Completed, within: 1d}
        start: a
        steps:
          a:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T22:00:00Z"),
            p.track("u1", "Order Completed", "2026-03-01T23:00:00Z"),
        ]
    )
    assert res.kinds() == [
        ("entered", "2026-03-01T22:00:00Z"),
        ("converted", "2026-03-01T23:00:00Z"),
        ("message", "2026-03-02T08:00:00Z"),
        ("completed", "2026-03-02T08:00:00Z"),
    ]


def _two_sms_journeys(p) -> None:
    for jid, trig in (("alpha", "Ping"), ("beta", "Pong")):
        p.journey(
            f"""
            id: {jid}
            name: {jid}
            trigger: {{event: {trig}}}
            start: a
            steps:
              a:
                send: {{channel: sms, content: {{text: "{jid}"}}}}
                next: end
            """
        )


def test_two_sends_deferred_to_the_same_morning_cannot_both_pass_a_cap_of_one(p):
    p.policies(QUIET_SMS + "frequency_caps:\n  - {channel: sms, limit: 1, per: 1d}\n")
    _two_sms_journeys(p)
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T22:00:00Z"),
            p.track("u1", "Pong", "2026-03-01T22:30:00Z"),
        ]
    )
    assert res.code == 0, res.err
    sent = res.messages(status="sent")
    capped = res.messages(status="suppressed")
    assert [(m["journey"], m["at"]) for m in sent] == [("alpha", "2026-03-02T08:00:00Z")]
    assert [(m["journey"], m["reason"]) for m in capped] == [("beta", "frequency_cap")]


def test_a_deferred_send_counts_under_caps_at_its_delivery_time(p):
    p.policies(QUIET_SMS + "frequency_caps:\n  - {channel: any, limit: 1, per: 1d}\n")
    p.template("t/a.email.j2", "{% block subject %}s{% endblock %}{% block html %}h{% endblock %}")
    p.journey(
        """
        id: alpha
        name: alpha
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send: {channel: sms, content: {text: "alpha"}}
            next: end
        """
    )
    p.journey(
        """
        id: beta
        name: beta
        trigger: {event: Pong}
        start: a
        steps:
          a:
            send: {channel: email, template: t/a}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", ADDR, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T22:00:00Z"),  # deferred, delivered 03-02 08:00
            # 23h after the delivery (33h after the deferral): still inside the 1d window
            p.track("u1", "Pong", "2026-03-03T07:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["journey"], m["at"], m["status"], m["reason"]) for m in res.messages()] == [
        ("alpha", "2026-03-02T08:00:00Z", "sent", None),
        ("beta", "2026-03-03T07:00:00Z", "suppressed", "frequency_cap"),
    ]


def test_a_cancelled_deferred_send_gives_its_cap_place_back(p):
    p.policies(QUIET_SMS + "frequency_caps:\n  - {channel: sms, limit: 1, per: 1d}\n")
    p.journey(
        """
        id: alpha
        name: alpha
        trigger: {event: Ping}
        exit_when:
          - event: Stop
        start: a
        steps:
          a:
            send: {channel: sms, content: {text: "alpha"}}
            next: end
        """
    )
    p.journey(
        """
        id: beta
        name: beta
        trigger: {event: Pong}
        start: a
        steps:
          a:
            send: {channel: sms, content: {text: "beta"}}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T22:00:00Z"),  # deferred to 08:00
            p.track("u1", "Stop", "2026-03-01T23:00:00Z"),  # cancelled: never sent
            p.track("u1", "Pong", "2026-03-02T08:30:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["journey"], m["at"], m["status"]) for m in res.messages()] == [
        ("beta", "2026-03-02T08:30:00Z", "sent")
    ]


def test_timers_set_by_one_event_fire_in_the_order_they_were_set(p):
    for jid in ("bb_second", "aa_first"):
        p.journey(
            f"""
            id: {jid}
            name: {jid}
            trigger: {{event: Ping}}
            start: pause
            steps:
              pause:
                wait: 1h
                next: say
              say:
                send: {{channel: sms, content: {{text: "{jid}"}}}}
                next: end
            """
        )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    # triggers run in journey id order, so aa_first's timer was set first
    assert [(m["journey"], m["at"]) for m in res.messages()] == [
        ("aa_first", "2026-03-01T11:00:00Z"),
        ("bb_second", "2026-03-01T11:00:00Z"),
    ]


def test_anonymous_run_deferred_then_linked_delivers_to_the_known_user(p):
    p.policies(QUIET_SMS)
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: a
        steps:
          a:
            send: {channel: sms, content: {text: "hi {{ profile.first_name }}"}}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", {"phone": "+15550009", "first_name": "Known"}, "2026-03-01T09:00:00Z"),
            p.identify(
                None,
                {"phone": "+15550008", "first_name": "Anon"},
                "2026-03-01T09:00:00Z",
                anon="a1",
            ),
            p.track(None, "Product Added", "2026-03-01T22:00:00Z", anon="a1"),  # deferred
            p.identify("u1", {}, "2026-03-01T23:00:00Z", anon="a1"),  # link while deferred
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["type"], ln["at"], ln["user_id"]) for ln in res.lines] == [
        ("entered", "2026-03-01T22:00:00Z", "a1"),
        ("message", "2026-03-02T08:00:00Z", "u1"),
        ("completed", "2026-03-02T08:00:00Z", "u1"),
    ]
    msg = res.messages()[0]
    assert (msg["to"], msg["content"]) == ("+15550009", {"text": "hi Known"})
