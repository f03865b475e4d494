"""Spec section 7 (+ identity/duplicates/page rules of section 9): events and identity."""
# ruff: noqa: E501  (journey YAML, templates and JSON events read best unwrapped)

from __future__ import annotations

import json
import re

import pytest

PHONE = {"phone": "+15550100"}


def _cart(p, steps_wait: str = "1h", re_entry: str = "never") -> None:
    p.template("t/hi.sms.j2", "Hi {{ profile.first_name }}")
    p.journey(
        f"""
        id: cart
        name: Cart
        trigger: {{event: Product Added}}
        entry: {{re_entry: {re_entry}}}
        start: pause
        steps:
          pause:
            wait: {steps_wait}
            next: nudge
          nudge:
            send: {{channel: sms, template: t/hi}}
            next: end
        """
    )


# --- identity -----------------------------------------------------------------------------


def test_identify_links_anonymous_run_which_continues_under_the_user_id(p):
    _cart(p)
    res = p.simulate(
        [
            p.track(None, "Product Added", "2026-03-01T10:00:00Z", anon="a1"),
            p.identify("u1", {**PHONE, "first_name": "Ann"}, "2026-03-01T10:30:00Z", anon="a1"),
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["type"], ln["at"], ln["user_id"]) for ln in res.lines] == [
        ("entered", "2026-03-01T10:00:00Z", "a1"),
        ("message", "2026-03-01T11:00:00Z", "u1"),
        ("completed", "2026-03-01T11:00:00Z", "u1"),
    ]
    msg = res.messages()[0]
    assert (msg["to"], msg["status"], msg["content"]) == ("+15550100", "sent", {"text": "Hi Ann"})


def test_alias_links_ids_too(p):
    _cart(p)
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, "first_name": "Ann"}, "2026-03-01T09:00:00Z"),
            p.track(None, "Product Added", "2026-03-01T10:00:00Z", anon="a1"),
            p.other("alias", "u1", "2026-03-01T10:30:00Z", previousId="a1"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["at"], m["user_id"], m["to"]) for m in res.messages()] == [
        ("2026-03-01T11:00:00Z", "u1", "+15550100")
    ]


def test_known_user_traits_win_over_anonymous_traits_on_link(p):
    p.template("t/who.sms.j2", "{{ profile.name }}|{{ profile.email }}|{{ profile.plan }}")
    p.journey(
        """
        id: who
        name: Who
        trigger: {event: Ping}
        start: say
        steps:
          say:
            send: {channel: sms, template: t/who}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, "name": "Known"}, "2026-03-01T09:00:00Z"),
            p.identify(
                None,
                {"name": "Anon", "email": "anon@example.com"},
                "2026-03-01T09:10:00Z",
                anon="a1",
            ),
            p.identify("u1", {"plan": "pro"}, "2026-03-01T09:20:00Z", anon="a1"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [m["content"] for m in res.messages()] == [{"text": "Known|anon@example.com|pro"}]


def test_later_events_under_the_anonymous_id_reach_the_user(p):
    _cart(p, "1m")
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, "first_name": "Ann"}, "2026-03-01T09:00:00Z", anon="a1"),
            p.track(None, "Product Added", "2026-03-01T10:00:00Z", anon="a1"),
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["type"], ln["user_id"]) for ln in res.lines] == [
        ("entered", "u1"),
        ("message", "u1"),
        ("completed", "u1"),
    ]
    assert res.messages()[0]["to"] == "+15550100"


def test_anonymous_event_after_link_resumes_the_users_wait_for(p):
    p.template("t/thanks.sms.j2", "Thanks")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: waiting
        steps:
          waiting:
            wait_for: {event: Checkout Started, timeout: 1d}
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
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
            p.identify("u1", {}, "2026-03-01T10:10:00Z", anon="a1"),
            p.track(None, "Checkout Started", "2026-03-01T11:00:00Z", anon="a1"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["at"], m["user_id"], m["step"]) for m in res.messages()] == [
        ("2026-03-01T11:00:00Z", "u1", "thanks")
    ]


def test_users_own_run_wins_when_both_ids_have_a_run(p):
    _cart(p, "2h")
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, "first_name": "Ann"}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),  # nudge due 12:00
            p.track(None, "Product Added", "2026-03-01T10:30:00Z", anon="a1"),  # due 12:30
            p.identify("u1", {}, "2026-03-01T11:00:00Z", anon="a1"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["at"], m["user_id"]) for m in res.messages()] == [("2026-03-01T12:00:00Z", "u1")]
    assert [(ln["at"], ln["user_id"]) for ln in res.of("completed")] == [
        ("2026-03-01T12:00:00Z", "u1")
    ]


def test_entry_history_moves_to_the_user_on_link(p):
    _cart(p, "1m", re_entry="never")
    res = p.simulate(
        [
            p.track(None, "Product Added", "2026-03-01T10:00:00Z", anon="a1"),
            p.identify("u1", PHONE, "2026-03-01T10:30:00Z", anon="a1"),
            p.track("u1", "Product Added", "2026-03-01T11:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["at"], ln["user_id"]) for ln in res.of("entered")] == [
        ("2026-03-01T10:00:00Z", "a1")
    ]


def test_send_history_moves_to_the_user_on_link(p):
    p.template("t/hi.sms.j2", "Hi")
    p.policies("frequency_caps:\n  - {channel: sms, limit: 1, per: 1d}\n")
    p.journey(
        """
        id: ping
        name: Ping
        trigger: {event: Ping}
        entry: {re_entry: always}
        start: hello
        steps:
          hello:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify(None, PHONE, "2026-03-01T09:00:00Z", anon="a1"),
            p.track(None, "Ping", "2026-03-01T10:00:00Z", anon="a1"),
            p.identify("u1", {}, "2026-03-01T10:30:00Z", anon="a1"),
            p.track("u1", "Ping", "2026-03-01T11:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["user_id"], m["status"], m["reason"]) for m in res.messages()] == [
        ("a1", "sent", None),
        ("u1", "suppressed", "frequency_cap"),
    ]


# --- traits ----------------------------------------------------------------------------


def test_traits_merge_nested_objects_key_by_key(p):
    p.template(
        "t/addr.sms.j2",
        "{{ profile.address.city }} {{ profile.address.zip }} {{ profile.first_name }}",
    )
    p.template(
        "t/mail.email.j2", "{% block subject %}s{% endblock %}{% block html %}h{% endblock %}"
    )
    p.policies("opt_in_channels: [sms, email]\n")
    p.journey(
        """
        id: merge
        name: Merge
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send: {channel: sms, template: t/addr}
            next: b
          b:
            send: {channel: email, template: t/mail}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify(
                "u1",
                {
                    **PHONE,
                    "email": "u1@example.com",
                    "first_name": "Ann",
                    "address": {"city": "Paris", "zip": "75001"},
                    "subscriptions": {"sms": True, "email": True},
                },
                "2026-03-01T09:00:00Z",
            ),
            p.identify(
                "u1",
                {"address": {"zip": "75002"}, "subscriptions": {"email": False}},
                "2026-03-01T09:30:00Z",
            ),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    msgs = res.messages()
    assert [(m["channel"], m["status"], m["reason"]) for m in msgs] == [
        ("sms", "sent", None),
        ("email", "suppressed", "unsubscribed"),
    ]
    assert msgs[0]["content"] == {"text": "Paris 75002 Ann"}


def test_later_identify_by_timestamp_wins_not_file_order(p):
    p.template("t/name.sms.j2", "{{ profile.first_name }}")
    p.journey(
        """
        id: name
        name: Name
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send: {channel: sms, template: t/name}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", {**PHONE, "first_name": "Later"}, "2026-03-01T09:30:00Z"),
            p.identify("u1", {**PHONE, "first_name": "Earlier"}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert [m["content"] for m in res.messages()] == [{"text": "Later"}]


# --- duplicates -----------------------------------------------------------------------


def test_duplicate_message_id_is_ignored_detected_in_file_order(p):
    p.template("t/v.sms.j2", "{{ trigger.properties.v }}")
    p.journey(
        """
        id: dup
        name: Dup
        trigger: {event: Ping}
        entry: {re_entry: always}
        start: a
        steps:
          a:
            send: {channel: sms, template: t/v}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T11:00:00Z", {"v": "first"}, mid="dup-1"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z", {"v": "second"}, mid="dup-1"),
        ]
    )
    assert res.code == 0, res.err
    assert [ln["at"] for ln in res.of("entered")] == ["2026-03-01T11:00:00Z"]
    assert [m["content"] for m in res.messages()] == [{"text": "first"}]


def test_duplicate_identify_is_ignored(p):
    p.template("t/name.sms.j2", "{{ profile.first_name }}")
    p.journey(
        """
        id: name
        name: Name
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send: {channel: sms, template: t/name}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify(
                "u1", {**PHONE, "first_name": "Original"}, "2026-03-01T09:00:00Z", mid="id-1"
            ),
            p.identify("u1", {"first_name": "Replayed"}, "2026-03-01T09:30:00Z", mid="id-1"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [m["content"] for m in res.messages()] == [{"text": "Original"}]


# --- page / screen / group -------------------------------------------------------------


def test_page_screen_group_are_valid_and_start_nothing_unless_named(p):
    p.journey(
        """
        id: buyers
        name: Buyers
        trigger: {event: Order Completed}
        start: pause
        steps:
          pause:
            wait: 1m
            next: end
        """
    )
    res = p.simulate(
        [
            p.other("page", "u1", "2026-03-01T10:00:00Z", name="Home", properties={"path": "/"}),
            p.other("screen", "u1", "2026-03-01T10:01:00Z", name="Home", properties={}),
            p.other("group", "u1", "2026-03-01T10:02:00Z", groupId="g1", traits={"name": "Acme"}),
        ]
    )
    assert res.code == 0, res.err
    assert res.lines == []
    assert not re.search(r"events\.jsonl:\d+:", res.err), res.err


def test_a_page_is_matched_by_its_name(p):
    p.template("t/hi.sms.j2", "saw {{ trigger.properties.path }}")
    p.journey(
        """
        id: pricing
        name: Pricing visitors
        trigger: {event: Pricing}
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
            p.other("page", "u1", "2026-03-01T10:00:00Z", name="Home", properties={"path": "/"}),
            p.other(
                "page",
                "u1",
                "2026-03-01T10:05:00Z",
                name="Pricing",
                properties={"path": "/pricing"},
            ),
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["type"], ln["at"]) for ln in res.lines] == [
        ("entered", "2026-03-01T10:05:00Z"),
        ("message", "2026-03-01T10:05:00Z"),
        ("completed", "2026-03-01T10:05:00Z"),
    ]
    assert res.messages()[0]["content"] == {"text": "saw /pricing"}


def test_a_named_page_resumes_a_wait_for(p):
    p.template("t/hi.sms.j2", "welcome to pricing")
    p.journey(
        """
        id: signup
        name: Signup
        trigger: {event: Signed Up}
        start: waiting
        steps:
          waiting:
            wait_for: {event: Pricing, timeout: 1d}
            on_event: hi
            on_timeout: end
          hi:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.track("u1", "Signed Up", "2026-03-01T10:00:00Z"),
            p.other("page", "u1", "2026-03-01T10:30:00Z", name="Pricing", properties={}),
        ]
    )
    assert [(m["at"], m["step"]) for m in res.messages()] == [("2026-03-01T10:30:00Z", "hi")]


# --- malformed messages -------------------------------------------------------------------

GOOD_JOURNEY = """
id: ping
name: Ping
trigger: {event: Ping}
start: pause
steps:
  pause:
    wait: 1m
    next: end
"""

T = "2026-03-01T10:00:00Z"


def _bad(**fields) -> str:
    return json.dumps(fields)


BAD_LINES = [
    ("{not json", None),
    (_bad(type="track", event="Ping", timestamp=T, messageId="x1"), "userId"),
    (_bad(type="track", userId="u9", timestamp=T, messageId="x2"), "event"),
    (
        _bad(type="track", event="Ping", userId="u9", timestamp="yesterday", messageId="x3"),
        "timestamp",
    ),
    (_bad(type="track", event="Ping", userId="u9", messageId="x4"), "timestamp"),
    (_bad(type="bogus", event="Ping", userId="u9", timestamp=T, messageId="x5"), "type"),
    (_bad(event="Ping", userId="u9", timestamp=T, messageId="x6"), "type"),
    (
        _bad(
            type="track", event="Ping", userId="u9", properties="oops", timestamp=T, messageId="x7"
        ),
        "properties",
    ),
    (_bad(type="identify", userId="u9", traits=[1, 2], timestamp=T, messageId="x8"), "traits"),
    ("[1, 2, 3]", None),
]


@pytest.mark.parametrize(("bad", "field"), BAD_LINES)
def test_malformed_line_is_reported_and_the_others_still_simulated(p, bad, field):
    p.journey(GOOD_JOURNEY)
    path = p.write_events(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            bad,
            p.track("u2", "Ping", "2026-03-01T11:00:00Z"),
        ]
    )
    res = p.simulate(path)
    assert res.code == 1
    lines = [ln for ln in res.err.splitlines() if "events.jsonl:2:" in ln]
    assert lines, res.err
    if field is not None:
        names = ("userId", "anonymousId") if field == "userId" else (field,)
        assert any(name in ln for ln in lines for name in names), res.err
    assert [ln["user_id"] for ln in res.of("entered")] == ["u1", "u2"]
    assert not any(
        "events.jsonl:1:" in ln or "events.jsonl:3:" in ln for ln in res.err.splitlines()
    )


def test_missing_both_ids_names_userid_or_anonymousid(p):
    p.journey(GOOD_JOURNEY)
    path = p.write_events(
        [
            '{"type": "track", "event": "Ping", "timestamp": "2026-03-01T10:00:00Z", "messageId": "z"}'
        ]
    )
    res = p.simulate(path)
    assert res.code == 1
    line = next(ln for ln in res.err.splitlines() if "events.jsonl:1:" in ln)
    assert "userId" in line or "anonymousId" in line


def test_a_rejected_message_does_not_consume_its_message_id(p):
    p.journey(GOOD_JOURNEY)
    path = p.write_events(
        [
            '{"type": "track", "userId": "u1", "timestamp": "2026-03-01T10:00:00Z", "messageId": "same"}',
            json.dumps(p.track("u1", "Ping", "2026-03-01T10:00:00Z", mid="same")),
        ]
    )
    res = p.simulate(path)
    assert res.code == 1
    assert "events.jsonl:1:" in res.err
    assert [ln["user_id"] for ln in res.of("entered")] == ["u1"]


def test_several_malformed_lines_each_reported(p):
    p.journey(GOOD_JOURNEY)
    path = p.write_events(
        [
            "not json at all",
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            '{"type": "track", "userId": "u9", "timestamp": "2026-03-01T10:00:00Z", "messageId": "x2"}',
        ]
    )
    res = p.simulate(path)
    assert res.code == 1
    assert "events.jsonl:1:" in res.err
    assert "events.jsonl:3:" in res.err
    assert [ln["user_id"] for ln in res.of("entered")] == ["u1"]


def test_message_without_message_id_is_still_applied(p):
    p.journey(GOOD_JOURNEY)
    path = p.write_events(
        ['{"type": "track", "event": "Ping", "userId": "u1", "timestamp": "2026-03-01T10:00:00Z"}']
    )
    res = p.simulate(path)
    assert res.code == 0, res.err
    assert [ln["user_id"] for ln in res.of("entered")] == ["u1"]


def test_goal_of_a_run_moved_from_the_anonymous_id_converts_under_the_user(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        goal: {event: Order Completed, within: 1d}
        start: pause
        steps:
          pause:
            wait: 2h
            next: end
        """
    )
    res = p.simulate(
        [
            p.track(None, "Product Added", "2026-03-01T10:00:00Z", anon="a1"),
            p.identify("u1", {}, "2026-03-01T10:30:00Z", anon="a1"),
            p.track("u1", "Order Completed", "2026-03-01T11:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(ln["type"], ln["at"], ln["user_id"]) for ln in res.lines] == [
        ("entered", "2026-03-01T10:00:00Z", "a1"),
        ("converted", "2026-03-01T11:00:00Z", "u1"),
        ("completed", "2026-03-01T12:00:00Z", "u1"),
    ]


def test_a_track_with_both_ids_does_not_link_them(p):
    p.template("t/hi.sms.j2", "Hi")
    p.journey(
        """
        id: ping
        name: Ping
        trigger: {event: Ping}
        start: hello
        steps:
          hello:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify(None, {"phone": "+15550001"}, "2026-03-01T09:00:00Z", anon="a1"),
            p.identify("u1", {"phone": "+15550002"}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z", anon="a1"),
            p.track(None, "Ping", "2026-03-01T11:00:00Z", anon="a1"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["user_id"], m["to"]) for m in res.messages()] == [
        ("u1", "+15550002"),
        ("a1", "+15550001"),
    ]


def test_real_segment_payloads_with_extra_common_fields_are_accepted(p):
    p.template("t/hi.sms.j2", "Hi {{ profile.first_name }}, {{ trigger.properties.product_id }}")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: hello
        steps:
          hello:
            send: {channel: sms, template: t/hi}
            next: end
        """
    )
    common = {
        "context": {"ip": "203.0.113.7", "library": {"name": "analytics.js", "version": "2.11.1"}},
        "integrations": {"All": True},
        "sentAt": "2026-03-01T10:00:01.000Z",
        "receivedAt": "2026-03-01T10:00:02.000Z",
        "originalTimestamp": "2026-03-01T10:00:00.000Z",
        "version": 2,
    }
    res = p.simulate(
        [
            {
                **p.identify(
                    "u1", {"phone": "+15550100", "first_name": "Ann"}, "2026-03-01T09:00:00Z"
                ),
                **common,
            },
            {**p.other("page", "u1", "2026-03-01T09:30:00Z"), **common},  # a page without a name
            {
                **p.track(
                    "u1",
                    "Product Added",
                    "2026-03-01T10:00:00Z",
                    {"product_id": "p-1", "price": 9.5},
                ),
                **common,
            },
        ]
    )
    assert res.code == 0, res.err
    assert [m["content"] for m in res.messages()] == [{"text": "Hi Ann, p-1"}]
