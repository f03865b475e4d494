"""Spec section 3: steps — wait, wait until, wait_for, send, branch, split; durations."""
# ruff: noqa: E501  (journey YAML, templates and JSON events read best unwrapped)

from __future__ import annotations

import pytest

PHONE = {"phone": "+15550100"}


def _wait_journey(p, wait_value: str) -> None:
    p.template("t/hi.sms.j2", "Hi")
    p.journey(
        f"""
        id: waiter
        name: Waiter
        trigger: {{event: Ping}}
        start: pause
        steps:
          pause:
            wait: {wait_value}
            next: hello
          hello:
            send: {{channel: sms, template: t/hi}}
            next: end
        """
    )


@pytest.mark.parametrize(
    ("duration", "expected_at"),
    [
        ("1h30m", "2026-03-01T11:30:00Z"),
        ("45m", "2026-03-01T10:45:00Z"),
        ("90s", "2026-03-01T10:01:30Z"),
        ("7d", "2026-03-08T10:00:00Z"),
        ("1w", "2026-03-08T10:00:00Z"),
        ("1d2h3m4s", "2026-03-02T12:03:04Z"),
    ],
)
def test_wait_resumes_after_the_duration(p, duration, expected_at):
    _wait_journey(p, duration)
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T10:00:00Z"),
        ("message", expected_at),
        ("completed", expected_at),
    ]


@pytest.mark.parametrize("bad", ["0s", "5x", "1.5h", "0m", "-1h", "30", "h"])
def test_bad_durations_are_compile_errors(p, compile_error, bad):
    _wait_journey(p, f'"{bad}"' if bad != "30" else "30")
    compile_error(p.validate(), "waiter.yaml")


def _until_journey(p, at: str = "10:00") -> None:
    p.template("t/hi.sms.j2", "Good morning")
    p.journey(
        f"""
        id: morning
        name: Morning
        trigger: {{event: Ping}}
        entry: {{re_entry: always}}
        start: pause
        steps:
          pause:
            wait: {{until: "{at}"}}
            next: hello
          hello:
            send: {{channel: sms, template: t/hi}}
            next: end
        """
    )


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-01T08:00:00Z", "2026-03-01T10:00:00Z"),
        ("2026-03-01T09:59:59Z", "2026-03-01T10:00:00Z"),
        ("2026-03-01T10:00:00Z", "2026-03-02T10:00:00Z"),  # exactly 10:00 -> next day
        ("2026-03-01T11:00:00Z", "2026-03-02T10:00:00Z"),
        ("2026-02-28T23:00:00Z", "2026-03-01T10:00:00Z"),  # month end
    ],
)
def test_wait_until_time_of_day_is_strictly_after_now(p, now, expected):
    _until_journey(p)
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-02-01T00:00:00Z"),
            p.track("u1", "Ping", now),
        ]
    )
    assert res.code == 0, res.err
    assert [m["at"] for m in res.messages()] == [expected]


def test_wait_until_uses_the_policy_default_timezone(p):
    _until_journey(p)
    p.policies("timezone: Asia/Shanghai\n")
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-02-01T00:00:00Z"),
            # 01:00Z = 09:00 in Shanghai -> 10:00 Shanghai = 02:00Z same day
            p.track("u1", "Ping", "2026-03-01T01:00:00Z"),
            p.identify("u2", PHONE, "2026-02-01T00:00:00Z"),
            # 03:00Z = 11:00 in Shanghai -> next day 10:00 Shanghai = 2026-03-02T02:00Z
            p.track("u2", "Ping", "2026-03-01T03:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["user_id"], m["at"]) for m in res.messages()] == [
        ("u1", "2026-03-01T02:00:00Z"),
        ("u2", "2026-03-02T02:00:00Z"),
    ]


def test_wait_until_profile_timezone_wins_over_policy(p):
    _until_journey(p)
    p.policies("timezone: Asia/Shanghai\n")
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, "timezone": "America/New_York"}, "2026-02-01T00:00:00Z"),
            # 12:00Z = 07:00 EST (UTC-5 on 1 March 2026) -> 10:00 EST = 15:00Z
            p.track("u1", "Ping", "2026-03-01T12:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [m["at"] for m in res.messages()] == ["2026-03-01T15:00:00Z"]


def test_wait_until_follows_daylight_saving_in_the_user_timezone(p):
    _until_journey(p)
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, "timezone": "America/New_York"}, "2026-02-01T00:00:00Z"),
            # Sat 7 March 16:00Z = 11:00 EST; DST starts Sun 8 March 02:00 local,
            # so the next 10:00 local is 10:00 EDT (UTC-4) = 14:00Z.
            p.track("u1", "Ping", "2026-03-07T16:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [m["at"] for m in res.messages()] == ["2026-03-08T14:00:00Z"]


def test_wait_until_without_policies_file_is_utc(p):
    _until_journey(p, "07:30")
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-02-01T00:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T07:29:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [m["at"] for m in res.messages()] == ["2026-03-01T07:30:00Z"]


@pytest.mark.parametrize("bad", ["25:00", "10:61", "ten"])
def test_wait_until_bad_time_is_a_compile_error(p, compile_error, bad):
    _until_journey(p, bad)
    compile_error(p.validate(), "morning.yaml")


WAIT_FOR = """
id: cart
name: Cart
trigger: {event: Product Added}
entry: {re_entry: always}
start: waiting
steps:
  waiting:
    wait_for:
      event: Checkout Started
      where: "event.properties.step == 2"
      timeout: 1d
    on_event: thanks
    on_timeout: nudge
  thanks:
    send: {channel: sms, template: t/thanks}
    next: end
  nudge:
    send: {channel: sms, template: t/nudge}
    next: end
"""


def _wait_for_project(p) -> None:
    p.template("t/thanks.sms.j2", "Thanks")
    p.template("t/nudge.sms.j2", "Nudge")
    p.journey(WAIT_FOR)


def test_wait_for_matching_event_goes_to_on_event(p):
    _wait_for_project(p)
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Checkout Started", "2026-03-01T12:00:00Z", {"step": 2}),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["step"], m["at"]) for m in res.messages()] == [("thanks", "2026-03-01T12:00:00Z")]
    assert [ln["at"] for ln in res.of("completed")] == ["2026-03-01T12:00:00Z"]


def test_wait_for_where_ignores_non_matching_events(p):
    _wait_for_project(p)
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Checkout Started", "2026-03-01T11:00:00Z", {"step": 1}),
            p.track("u1", "Checkout Started", "2026-03-01T11:00:00Z"),  # no property: false
            p.track("u1", "Checkout Started", "2026-03-01T13:00:00Z", {"step": 2}),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["step"], m["at"]) for m in res.messages()] == [("thanks", "2026-03-01T13:00:00Z")]


def test_wait_for_timeout_goes_to_on_timeout(p):
    _wait_for_project(p)
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u1", "Checkout Started", "2026-03-01T11:00:00Z", {"step": 1}),
            p.track("u1", "Checkout Started", "2026-03-02T10:00:01Z", {"step": 2}),  # too late
        ]
    )
    assert res.code == 0, res.err
    assert [(m["step"], m["at"]) for m in res.messages()] == [("nudge", "2026-03-02T10:00:00Z")]


def test_wait_for_event_list_and_other_users_do_not_resume(p):
    p.template("t/thanks.sms.j2", "Thanks")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: waiting
        steps:
          waiting:
            wait_for: {event: [Checkout Started, Order Completed], timeout: 1d}
            on_event: thanks
            on_timeout: end
          thanks:
            send: {channel: sms, template: t/thanks}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.identify("u2", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u2", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u3", "Order Completed", "2026-03-01T11:00:00Z"),  # another user
            p.track("u1", "Order Completed", "2026-03-01T12:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["user_id"], m["at"]) for m in res.messages()] == [("u1", "2026-03-01T12:00:00Z")]
    assert [(ln["user_id"], ln["at"]) for ln in res.of("completed")] == [
        ("u1", "2026-03-01T12:00:00Z"),
        ("u2", "2026-03-02T10:00:00Z"),
    ]


def test_event_variable_is_the_trigger_before_and_the_awaited_event_after_wait_for(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: first
        steps:
          first:
            send:
              channel: sms
              content: {text: "{{ event.event }}/{{ event.properties.sku }}"}
            next: waiting
          waiting:
            wait_for: {event: Checkout Started, timeout: 1d}
            on_event: second
            on_timeout: end
          second:
            send:
              channel: sms
              content: {text: "{{ event.event }}/{{ event.properties.sku }}/{{ trigger.properties.sku }}"}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z", {"sku": "A1"}),
            p.track("u1", "Checkout Started", "2026-03-01T11:00:00Z", {"sku": "B2"}),
        ]
    )
    assert res.code == 0, res.err
    assert [m["content"] for m in res.messages()] == [
        {"text": "Product Added/A1"},
        {"text": "Checkout Started/B2/A1"},
    ]


def test_send_with_template(p):
    p.template("cart/nudge.sms.j2", "Hi {{ profile.first_name }}, your cart misses you")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: nudge
        steps:
          nudge:
            send: {channel: sms, template: cart/nudge}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, "first_name": "Ann"}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    (msg,) = res.messages()
    assert msg["status"] == "sent"
    assert msg["to"] == "+15550100"
    assert msg["content"] == {"text": "Hi Ann, your cart misses you"}


def test_send_inline_content(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: nudge
        steps:
          nudge:
            send:
              channel: sms
              content:
                text: "Hi {{ profile.first_name }}, {{ trigger.properties.name }} is waiting"
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, "first_name": "Ann"}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z", {"name": "Red shoes"}),
        ]
    )
    assert res.code == 0, res.err
    (msg,) = res.messages()
    assert (msg["status"], msg["content"]) == ("sent", {"text": "Hi Ann, Red shoes is waiting"})


def test_send_inline_content_with_fallback_maps_each_channel_to_its_parts(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: nudge
        steps:
          nudge:
            send:
              channel: sms
              fallback: [email]
              content:
                sms: {text: "SMS for {{ profile.first_name }}"}
                email:
                  subject: "Mail for {{ profile.first_name }}"
                  html: "<p>Hello {{ profile.first_name }}</p>"
                  text: "Hello {{ profile.first_name }}"
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify(
                "u1", {"email": "ann@example.com", "first_name": "Ann"}, "2026-03-01T09:00:00Z"
            ),
            p.identify("u2", {**PHONE, "first_name": "Bob"}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.track("u2", "Product Added", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    u1 = res.messages(user_id="u1")
    assert [(m["channel"], m["status"], m["reason"]) for m in u1] == [
        ("sms", "suppressed", "no_address"),
        ("email", "sent", None),
    ]
    assert u1[1]["to"] == "ann@example.com"
    assert u1[1]["content"] == {
        "subject": "Mail for Ann",
        "html": "<p>Hello Ann</p>",
        "text": "Hello Ann",
    }
    u2 = res.messages(user_id="u2")
    assert [(m["channel"], m["status"], m["content"]) for m in u2] == [
        ("sms", "sent", {"text": "SMS for Bob"})
    ]


BRANCH = """
id: tiers
name: Tiers
trigger: {event: Ping}
start: check
steps:
  check:
    branch:
      - when: "profile.vip"
        next: vip
      - when: "profile.score > 10"
        next: high
      - else: other
  vip:
    send: {channel: sms, content: {text: vip}}
    next: end
  high:
    send: {channel: sms, content: {text: high}}
    next: end
  other:
    send: {channel: sms, content: {text: other}}
    next: end
"""


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        ({"vip": True, "score": 50}, "vip"),  # both true: first wins
        ({"vip": False, "score": 50}, "high"),
        ({"vip": False, "score": 5}, "other"),
        ({}, "other"),  # missing traits: conditions are false
        ({"score": 11}, "high"),  # missing vip is false, not an error that stops the run
        ({"vip": False, "score": "lots"}, "other"),  # type error: false
    ],
)
def test_branch_first_true_wins_else_and_missing_trait_false(p, traits, expected):
    p.journey(BRANCH)
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, **traits}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["step"], m["content"]) for m in res.messages()] == [(expected, {"text": expected})]
    assert [ln["at"] for ln in res.of("completed")] == ["2026-03-01T10:00:00Z"]


def test_branch_on_nested_missing_attribute_is_false(p):
    p.journey(
        """
        id: geo
        name: Geo
        trigger: {event: Ping}
        start: check
        steps:
          check:
            branch:
              - when: "profile.address.city == 'Paris'"
                next: paris
              - else: other
          paris:
            send: {channel: sms, content: {text: paris}}
            next: end
          other:
            send: {channel: sms, content: {text: other}}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.identify("u2", {**PHONE, "address": {"city": "Paris"}}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u2", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert {m["user_id"]: m["step"] for m in res.messages()} == {"u1": "other", "u2": "paris"}


SPLIT = """
id: ab
name: AB test
trigger: {event: Ping}
start: pick
steps:
  pick:
    split:
      - weight: {a}
        next: arm_a
      - weight: {b}
        next: arm_b
  arm_a:
    wait: 1m
    next: end
  arm_b:
    wait: 2m
    next: end
"""


def _split_arms(res) -> dict[str, str]:
    """user -> arm, read from the completion time (arm_a: +1m, arm_b: +2m)."""
    arms = {}
    for ln in res.of("completed"):
        arms[ln["user_id"]] = "a" if ln["at"].endswith(":01:00Z") else "b"
    return arms


def _split_events(p, n: int) -> list[dict]:
    return [p.track(f"user{i}", "Ping", "2026-03-01T10:00:00Z") for i in range(n)]


def test_split_is_deterministic_per_user_across_runs(p):
    p.journey(SPLIT.replace("{a}", "1").replace("{b}", "1"))
    events = _split_events(p, 60)
    first = _split_arms(p.simulate(events))
    second = _split_arms(p.simulate(events))
    assert len(first) == 60
    assert first == second
    assert set(first.values()) == {"a", "b"}  # 60 users on a 50/50 split use both arms


def test_split_respects_weights(p):
    p.journey(SPLIT.replace("{a}", "90").replace("{b}", "10"))
    res = p.simulate(_split_events(p, 200))
    assert res.code == 0, res.err
    arms = _split_arms(res)
    assert len(arms) == 200
    heavy = sum(1 for a in arms.values() if a == "a")
    assert heavy > 150, heavy
    assert heavy < 200, heavy  # the 10% arm is used too


def test_split_even_weights_roughly_even(p):
    p.journey(SPLIT.replace("{a}", "1").replace("{b}", "1"))
    res = p.simulate(_split_events(p, 200))
    heavy = sum(1 for a in _split_arms(res).values() if a == "a")
    assert 60 < heavy < 140, heavy


@pytest.mark.parametrize("weight", ["0", "-1", "1.5", "lots"])
def test_split_weights_must_be_positive_integers(p, compile_error, weight):
    p.journey(SPLIT.replace("{a}", weight).replace("{b}", "1"))
    compile_error(p.validate(), "ab.yaml")


def test_a_step_with_two_kinds_is_a_compile_error(p, compile_error):
    p.template("t/hi.sms.j2", "Hi")
    p.journey(
        """
        id: twokinds
        name: Two kinds
        trigger: {event: Ping}
        start: both
        steps:
          both:
            wait: 1h
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    compile_error(p.validate(), "twokinds.yaml", "both")


def test_a_step_with_no_kind_is_a_compile_error(p, compile_error):
    p.journey(
        """
        id: nokind
        name: No kind
        trigger: {event: Ping}
        start: nothing
        steps:
          nothing:
            next: end
        """
    )
    compile_error(p.validate(), "nokind.yaml", "nothing")


def test_all_channels_are_known(p):
    p.journey(
        """
        id: channels
        name: Channels
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send: {channel: sms, content: {text: s}}
            next: b
          b:
            send: {channel: email, content: {subject: s, html: "<p>h</p>", text: t}}
            next: c
          c:
            send: {channel: wecom, content: {content: "**w**"}}
            next: d
          d:
            send: {channel: push, content: {title: T, body: B, url: "https://x.example/p"}}
            next: end
        """
    )
    assert p.validate().code == 0
    res = p.simulate(
        [
            p.identify(
                "u1",
                {
                    "phone": "+15550100",
                    "email": "u1@example.com",
                    "wecom_userid": "wx_u1",
                    "push_token": "tok-1",
                },
                "2026-03-01T09:00:00Z",
            ),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    got = [(m["channel"], m["to"], m["status"], m["content"]) for m in res.messages()]
    assert got == [
        ("sms", "+15550100", "sent", {"text": "s"}),
        ("email", "u1@example.com", "sent", {"subject": "s", "html": "<p>h</p>", "text": "t"}),
        ("wecom", "wx_u1", "sent", {"content": "**w**"}),
        ("push", "tok-1", "sent", {"title": "T", "body": "B", "url": "https://x.example/p"}),
    ]


def test_split_is_seeded_by_journey_and_step_not_only_user(p):
    p.journey(SPLIT.replace("{a}", "1").replace("{b}", "1"))
    p.journey(SPLIT.replace("{a}", "1").replace("{b}", "1").replace("id: ab", "id: cd"))
    res = p.simulate(_split_events(p, 200))
    assert res.code == 0, res.err
    per_journey: dict[str, dict[str, str]] = {"ab": {}, "cd": {}}
    for ln in res.of("completed"):
        per_journey[ln["journey"]][ln["user_id"]] = "a" if ln["at"].endswith(":01:00Z") else "b"
    assert len(per_journey["ab"]) == len(per_journey["cd"]) == 200
    # independent 50/50 splits agree on all 200 users with probability 2**-200
    assert per_journey["ab"] != per_journey["cd"]


def test_event_stays_the_trigger_after_a_wait_for_timeout(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: waiting
        steps:
          waiting:
            wait_for: {event: Checkout Started, timeout: 1h}
            on_event: end
            on_timeout: nudge
          nudge:
            send:
              channel: sms
              content: {text: "{{ event.event }}"}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["at"], m["content"]) for m in res.messages()] == [
        ("2026-03-01T11:00:00Z", {"text": "Product Added"})
    ]
