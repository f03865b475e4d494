"""Spec section 6 (+ fallback rules of section 9): the send policy chain."""

from __future__ import annotations

import textwrap

import pytest

ADDR = {
    "phone": "+15550100",
    "email": "u1@example.com",
    "wecom_userid": "wx_u1",
    "push_token": "tok-1",
}

TEMPLATES = {
    "t/a.sms.j2": "sms a",
    "t/b.sms.j2": "sms b",
    "t/c.sms.j2": "sms c",
    "t/a.email.j2": "{% block subject %}mail a{% endblock %}{% block html %}<p>a</p>{% endblock %}",
    "t/b.email.j2": "{% block subject %}mail b{% endblock %}{% block html %}<p>b</p>{% endblock %}",
    "t/a.push.j2": "{% block title %}push a{% endblock %}{% block body %}a{% endblock %}",
    "t/a.wecom.j2": "wecom a",
    "t/broken.sms.j2": "code {{ coupon_code }}",
    "t/broken.email.j2": "{% block subject %}s{% endblock %}{% block html %}h{% endblock %}",
    "t/broken.push.j2": "{% block title %}t{% endblock %}{% block body %}b{% endblock %}",
}


def _project(
    p, steps: str, policies: str | None = None, jid: str = "promo", trigger: str = "Ping"
) -> None:
    for rel, text in TEMPLATES.items():
        p.template(rel, text)
    if policies is not None:
        p.policies(policies)
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ")
    first = textwrap.dedent(steps).strip("\n").split(":", 1)[0].strip()
    p.journey(
        f"id: {jid}\nname: {jid}\ntrigger: {{event: {trigger}}}\nentry: {{re_entry: always}}\n"
        f"start: {first}\nsteps:\n{body}\n"
    )


def _sim(p, traits, *at: str, user="u1", extra=()):
    events = [p.identify(user, traits, "2026-03-01T00:00:00Z")]
    events += [p.track(user, "Ping", t) for t in at]
    events += list(extra)
    return p.simulate(events)


def _summary(res):
    return [(m["at"], m["step"], m["channel"], m["status"], m["reason"]) for m in res.messages()]


ONE_SMS = """
a:
  send: {channel: sms, template: t/a}
  next: end
"""


# --- 1. subscription ----------------------------------------------------------------


def test_unsubscribed_channel_is_suppressed(p):
    _project(p, ONE_SMS)
    res = _sim(p, {**ADDR, "subscriptions": {"sms": False}}, "2026-03-01T10:00:00Z")
    assert res.code == 0, res.err
    assert _summary(res) == [("2026-03-01T10:00:00Z", "a", "sms", "suppressed", "unsubscribed")]
    assert res.messages()[0]["to"] == "+15550100"  # `to` is null only without an address
    assert [ln["at"] for ln in res.of("completed")] == ["2026-03-01T10:00:00Z"]


def test_non_opt_in_channel_needs_no_subscription_flag(p):
    _project(p, ONE_SMS)
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    assert _summary(res) == [("2026-03-01T10:00:00Z", "a", "sms", "sent", None)]


@pytest.mark.parametrize(
    ("subscriptions", "expected"),
    [
        (None, ("suppressed", "unsubscribed")),
        ({"email": True}, ("suppressed", "unsubscribed")),
        ({"sms": False}, ("suppressed", "unsubscribed")),
        ({"sms": True}, ("sent", None)),
    ],
)
def test_opt_in_channel_needs_subscription_true(p, subscriptions, expected):
    _project(p, ONE_SMS, policies="opt_in_channels: [sms]\n")
    traits = dict(ADDR)
    if subscriptions is not None:
        traits["subscriptions"] = subscriptions
    res = _sim(p, traits, "2026-03-01T10:00:00Z")
    assert res.code == 0, res.err
    assert [(m["status"], m["reason"]) for m in res.messages()] == [expected]


def test_opt_in_applies_only_to_listed_channels(p):
    _project(
        p,
        """
        a:
          send: {channel: email, template: t/a}
          next: end
        """,
        policies="opt_in_channels: [sms]\n",
    )
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    assert [(m["channel"], m["status"]) for m in res.messages()] == [("email", "sent")]


# --- 2. address -----------------------------------------------------------------------


def test_missing_address_is_suppressed_no_address(p):
    _project(p, ONE_SMS)
    res = _sim(p, {"email": "u1@example.com"}, "2026-03-01T10:00:00Z")
    assert _summary(res) == [("2026-03-01T10:00:00Z", "a", "sms", "suppressed", "no_address")]
    assert res.messages()[0]["to"] is None


def test_subscription_is_checked_before_address(p):
    _project(p, ONE_SMS)
    res = _sim(p, {"subscriptions": {"sms": False}}, "2026-03-01T10:00:00Z")
    assert [m["reason"] for m in res.messages()] == ["unsubscribed"]


# --- 3. frequency caps ----------------------------------------------------------------

CAP_SMS = "frequency_caps:\n  - {channel: sms, limit: 1, per: 1d}\n"

THREE_SMS = """
a:
  send: {channel: sms, template: t/a}
  next: w1
w1:
  wait: 2h
  next: b
b:
  send: {channel: sms, template: t/b}
  next: w2
w2:
  wait: 1d
  next: c
c:
  send: {channel: sms, template: t/c}
  next: end
"""


def test_frequency_cap_rolling_window(p):
    _project(p, THREE_SMS, policies=CAP_SMS)
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    assert res.code == 0, res.err
    assert _summary(res) == [
        ("2026-03-01T10:00:00Z", "a", "sms", "sent", None),
        ("2026-03-01T12:00:00Z", "b", "sms", "suppressed", "frequency_cap"),
        # window 2026-03-01T12:00 .. 03-02T12:00 holds no sent sms (b was suppressed)
        ("2026-03-02T12:00:00Z", "c", "sms", "sent", None),
    ]


def test_frequency_cap_any_channel(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a}
          next: b
        b:
          send: {channel: email, template: t/a}
          next: c
        c:
          send: {channel: push, template: t/a}
          next: end
        """,
        policies="frequency_caps:\n  - {channel: any, limit: 2, per: 7d}\n",
    )
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    assert [(m["channel"], m["status"], m["reason"]) for m in res.messages()] == [
        ("sms", "sent", None),
        ("email", "sent", None),
        ("push", "suppressed", "frequency_cap"),
    ]


def test_frequency_cap_is_per_channel(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a}
          next: b
        b:
          send: {channel: email, template: t/a}
          next: c
        c:
          send: {channel: sms, template: t/b}
          next: end
        """,
        policies=CAP_SMS,
    )
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    assert [(m["channel"], m["status"], m["reason"]) for m in res.messages()] == [
        ("sms", "sent", None),
        ("email", "sent", None),
        ("sms", "suppressed", "frequency_cap"),
    ]


def test_frequency_cap_is_per_user_across_journeys(p):
    _project(p, ONE_SMS, policies=CAP_SMS, jid="first", trigger="Ping")
    p.journey(
        """
        id: second
        name: second
        trigger: {event: Pong}
        start: a
        steps:
          a:
            send: {channel: sms, template: t/b}
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", ADDR, "2026-03-01T00:00:00Z"),
            p.identify("u2", ADDR, "2026-03-01T00:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u1", "Pong", "2026-03-01T11:00:00Z"),
            p.track("u2", "Pong", "2026-03-01T11:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["user_id"], m["journey"], m["status"], m["reason"]) for m in res.messages()] == [
        ("u1", "first", "sent", None),
        ("u1", "second", "suppressed", "frequency_cap"),
        ("u2", "second", "sent", None),
    ]


def test_suppressed_and_failed_messages_do_not_count_toward_caps(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a}
          next: w
        w:
          wait: 1h
          next: broken
        broken:
          send: {channel: sms, template: t/broken}
          next: b
        b:
          send: {channel: sms, template: t/b}
          next: end
        """,
        policies=CAP_SMS,
    )
    res = p.simulate(
        [
            p.identify("u1", {"email": "u1@example.com"}, "2026-03-01T00:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.identify("u1", {"phone": "+15550100"}, "2026-03-01T10:30:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert _summary(res) == [
        ("2026-03-01T10:00:00Z", "a", "sms", "suppressed", "no_address"),
        ("2026-03-01T11:00:00Z", "broken", "sms", "failed", res.messages()[1]["reason"]),
        ("2026-03-01T11:00:00Z", "b", "sms", "sent", None),
    ]
    assert res.messages()[1]["reason"]


def test_ignore_frequency_cap(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a}
          next: b
        b:
          send: {channel: sms, template: t/b, ignore_frequency_cap: true}
          next: c
        c:
          send: {channel: sms, template: t/c, ignore_frequency_cap: false}
          next: end
        """,
        policies=CAP_SMS,
    )
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    assert [(m["step"], m["status"], m["reason"]) for m in res.messages()] == [
        ("a", "sent", None),
        ("b", "sent", None),
        ("c", "suppressed", "frequency_cap"),
    ]


def test_a_send_that_ignored_the_cap_still_counts_toward_it(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a, ignore_frequency_cap: true}
          next: b
        b:
          send: {channel: sms, template: t/b}
          next: end
        """,
        policies=CAP_SMS,
    )
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    assert [(m["step"], m["status"], m["reason"]) for m in res.messages()] == [
        ("a", "sent", None),
        ("b", "suppressed", "frequency_cap"),
    ]


def test_fallback_to_a_channel_in_quiet_hours_is_deferred(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a, fallback: [push]}
          next: end
        """,
        policies='quiet_hours: {start: "21:00", end: "08:00", channels: [push]}\n',
    )
    res = _sim(p, {**ADDR, "subscriptions": {"sms": False}}, "2026-03-01T22:00:00Z")
    assert res.code == 0, res.err
    assert _summary(res) == [
        ("2026-03-01T22:00:00Z", "a", "sms", "suppressed", "unsubscribed"),
        ("2026-03-02T08:00:00Z", "a", "push", "sent", None),
    ]
    assert [ln["at"] for ln in res.of("completed")] == ["2026-03-02T08:00:00Z"]


def test_ignore_frequency_cap_does_not_bypass_unsubscribe(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a, ignore_frequency_cap: true}
          next: end
        """,
        policies=CAP_SMS,
    )
    res = _sim(p, {**ADDR, "subscriptions": {"sms": False}}, "2026-03-01T10:00:00Z")
    assert [m["reason"] for m in res.messages()] == ["unsubscribed"]


def test_subscription_is_checked_before_frequency_cap(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a}
          next: w
        w:
          wait: 1h
          next: b
        b:
          send: {channel: sms, template: t/b}
          next: end
        """,
        policies=CAP_SMS,
    )
    res = p.simulate(
        [
            p.identify("u1", ADDR, "2026-03-01T00:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.identify("u1", {"subscriptions": {"sms": False}}, "2026-03-01T10:30:00Z"),
        ]
    )
    assert [(m["step"], m["status"], m["reason"]) for m in res.messages()] == [
        ("a", "sent", None),
        ("b", "suppressed", "unsubscribed"),
    ]


# --- 4. quiet hours -----------------------------------------------------------------

QUIET = """
quiet_hours:
  start: "21:00"
  end: "08:00"
  channels: [sms]
  action: {action}
"""

SMS_THEN_WAIT = """
a:
  send: {channel: sms, template: t/a}
  next: w
w:
  wait: 1h
  next: end
"""


def test_quiet_hours_defer_to_the_end_of_quiet_hours(p):
    _project(p, SMS_THEN_WAIT, policies=QUIET.format(action="defer"))
    res = _sim(p, ADDR, "2026-03-01T22:00:00Z")
    assert res.code == 0, res.err
    assert res.kinds() == [
        ("entered", "2026-03-01T22:00:00Z"),
        ("message", "2026-03-02T08:00:00Z"),
        ("completed", "2026-03-02T09:00:00Z"),  # the run waited on the send step
    ]
    assert res.messages()[0]["status"] == "sent"
    assert res.messages()[0]["content"] == {"text": "sms a"}


def test_quiet_hours_action_defaults_to_defer(p):
    _project(p, ONE_SMS, policies='quiet_hours: {start: "21:00", end: "08:00", channels: [sms]}\n')
    res = _sim(p, ADDR, "2026-03-01T23:30:00Z")
    assert _summary(res) == [("2026-03-02T08:00:00Z", "a", "sms", "sent", None)]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-03-01T20:59:59Z", "2026-03-01T20:59:59Z"),
        ("2026-03-01T21:00:00Z", "2026-03-02T08:00:00Z"),  # start is inside
        ("2026-03-02T00:00:00Z", "2026-03-02T08:00:00Z"),
        ("2026-03-02T07:59:59Z", "2026-03-02T08:00:00Z"),
        ("2026-03-02T08:00:00Z", "2026-03-02T08:00:00Z"),  # end is outside
    ],
)
def test_quiet_hours_are_half_open_and_wrap_midnight(p, at, expected):
    _project(p, ONE_SMS, policies=QUIET.format(action="defer"))
    res = _sim(p, ADDR, at)
    assert [(m["at"], m["status"]) for m in res.messages()] == [(expected, "sent")]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-03-01T11:59:00Z", "2026-03-01T11:59:00Z"),
        ("2026-03-01T12:00:00Z", "2026-03-01T14:00:00Z"),
        ("2026-03-01T13:00:00Z", "2026-03-01T14:00:00Z"),
        ("2026-03-01T14:00:00Z", "2026-03-01T14:00:00Z"),
    ],
)
def test_quiet_hours_not_wrapping_midnight(p, at, expected):
    _project(p, ONE_SMS, policies='quiet_hours: {start: "12:00", end: "14:00"}\n')
    res = _sim(p, ADDR, at)
    assert [(m["at"], m["status"]) for m in res.messages()] == [(expected, "sent")]


def test_quiet_hours_start_equal_end_means_none(p):
    _project(p, ONE_SMS, policies='quiet_hours: {start: "21:00", end: "21:00"}\n')
    res = _sim(p, ADDR, "2026-03-01T21:30:00Z")
    assert [(m["at"], m["status"]) for m in res.messages()] == [("2026-03-01T21:30:00Z", "sent")]


def test_quiet_hours_only_for_listed_channels(p):
    _project(
        p,
        """
        a:
          send: {channel: email, template: t/a}
          next: end
        """,
        policies=QUIET.format(action="defer"),
    )
    res = _sim(p, ADDR, "2026-03-01T22:00:00Z")
    assert [(m["at"], m["status"]) for m in res.messages()] == [("2026-03-01T22:00:00Z", "sent")]


def test_quiet_hours_without_channels_apply_to_every_channel(p):
    _project(
        p,
        """
        a:
          send: {channel: email, template: t/a}
          next: end
        """,
        policies='quiet_hours: {start: "21:00", end: "08:00"}\n',
    )
    res = _sim(p, ADDR, "2026-03-01T22:00:00Z")
    assert [(m["at"], m["status"]) for m in res.messages()] == [("2026-03-02T08:00:00Z", "sent")]


def test_quiet_hours_use_policy_timezone(p):
    _project(p, ONE_SMS, policies="timezone: Asia/Shanghai\n" + QUIET.format(action="defer"))
    # 14:00Z is 22:00 in Shanghai; quiet hours end 08:00 Shanghai = 00:00Z
    res = _sim(p, ADDR, "2026-03-01T14:00:00Z")
    assert _summary(res) == [("2026-03-02T00:00:00Z", "a", "sms", "sent", None)]


def test_quiet_hours_use_profile_timezone_over_policy(p):
    _project(p, ONE_SMS, policies="timezone: UTC\n" + QUIET.format(action="defer"))
    res = p.simulate(
        [
            p.identify("u1", {**ADDR, "timezone": "Asia/Shanghai"}, "2026-03-01T00:00:00Z"),
            p.identify("u2", ADDR, "2026-03-01T00:00:00Z"),
            # 13:30Z: 21:30 in Shanghai (quiet), 13:30 in UTC (not quiet)
            p.track("u1", "Ping", "2026-03-01T13:30:00Z"),
            p.track("u2", "Ping", "2026-03-01T13:30:00Z"),
        ]
    )
    assert [(m["user_id"], m["at"], m["status"]) for m in res.messages()] == [
        ("u2", "2026-03-01T13:30:00Z", "sent"),
        ("u1", "2026-03-02T00:00:00Z", "sent"),
    ]


def test_quiet_hours_skip_suppresses_and_moves_on_without_fallback(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a, fallback: [email]}
          next: b
        b:
          send: {channel: email, template: t/b}
          next: end
        """,
        policies=QUIET.format(action="skip"),
    )
    res = _sim(p, ADDR, "2026-03-01T22:00:00Z")
    assert res.code == 0, res.err
    assert _summary(res) == [
        ("2026-03-01T22:00:00Z", "a", "sms", "suppressed", "quiet_hours"),
        ("2026-03-01T22:00:00Z", "b", "email", "sent", None),
    ]
    assert [ln["at"] for ln in res.of("completed")] == ["2026-03-01T22:00:00Z"]


def test_frequency_cap_is_checked_before_quiet_hours(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a}
          next: w
        w:
          wait: 2h
          next: b
        b:
          send: {channel: sms, template: t/b}
          next: end
        """,
        policies=CAP_SMS + QUIET.format(action="defer"),
    )
    res = _sim(p, ADDR, "2026-03-01T20:00:00Z")
    assert _summary(res) == [
        ("2026-03-01T20:00:00Z", "a", "sms", "sent", None),
        ("2026-03-01T22:00:00Z", "b", "sms", "suppressed", "frequency_cap"),
    ]


def test_frequency_cap_is_checked_before_quiet_hours_skip(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a}
          next: w
        w:
          wait: 2h
          next: b
        b:
          send: {channel: sms, template: t/b}
          next: end
        """,
        policies=CAP_SMS + QUIET.format(action="skip"),
    )
    res = _sim(p, ADDR, "2026-03-01T20:00:00Z")
    assert [m["reason"] for m in res.messages()] == [None, "frequency_cap"]


# --- fallback ---------------------------------------------------------------------------


def test_fallback_after_unsubscribed(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a, fallback: [email]}
          next: end
        """,
    )
    res = _sim(p, {**ADDR, "subscriptions": {"sms": False}}, "2026-03-01T10:00:00Z")
    assert _summary(res) == [
        ("2026-03-01T10:00:00Z", "a", "sms", "suppressed", "unsubscribed"),
        ("2026-03-01T10:00:00Z", "a", "email", "sent", None),
    ]
    assert res.messages()[1]["to"] == "u1@example.com"
    assert res.messages()[1]["content"]["subject"] == "mail a"


def test_fallback_after_opt_in_missing(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a, fallback: [email]}
          next: end
        """,
        policies="opt_in_channels: [sms]\n",
    )
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    assert [(m["channel"], m["status"], m["reason"]) for m in res.messages()] == [
        ("sms", "suppressed", "unsubscribed"),
        ("email", "sent", None),
    ]


def test_fallback_chain_after_no_address_each_attempt_its_own_line(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a, fallback: [push, email]}
          next: end
        """,
    )
    res = _sim(p, {"email": "u1@example.com"}, "2026-03-01T10:00:00Z")
    assert _summary(res) == [
        ("2026-03-01T10:00:00Z", "a", "sms", "suppressed", "no_address"),
        ("2026-03-01T10:00:00Z", "a", "push", "suppressed", "no_address"),
        ("2026-03-01T10:00:00Z", "a", "email", "sent", None),
    ]


def test_no_fallback_when_the_first_channel_is_sent(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a, fallback: [email]}
          next: end
        """,
    )
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    assert [(m["channel"], m["status"]) for m in res.messages()] == [("sms", "sent")]


def test_no_fallback_after_frequency_cap(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a}
          next: b
        b:
          send: {channel: sms, template: t/b, fallback: [email]}
          next: end
        """,
        policies=CAP_SMS,
    )
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    assert [(m["step"], m["channel"], m["status"], m["reason"]) for m in res.messages()] == [
        ("a", "sms", "sent", None),
        ("b", "sms", "suppressed", "frequency_cap"),
    ]


def test_no_fallback_after_render_failure(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/broken, fallback: [email]}
          next: b
        b:
          send: {channel: sms, template: t/b}
          next: end
        """,
    )
    res = _sim(p, ADDR, "2026-03-01T10:00:00Z")
    msgs = res.messages()
    assert [(m["step"], m["channel"], m["status"]) for m in msgs] == [
        ("a", "sms", "failed"),
        ("b", "sms", "sent"),
    ]
    assert msgs[0]["content"] is None and msgs[0]["reason"]


def test_render_failure_on_a_fallback_channel_stops_the_fallback_chain(p):
    _project(
        p,
        """
        a:
          send: {channel: email, template: t/broken, fallback: [sms, push]}
          next: end
        """,
    )
    # email: no address -> sms: render fails -> push must NOT be tried
    res = _sim(p, {"phone": "+15550100", "push_token": "tok-1"}, "2026-03-01T10:00:00Z")
    assert res.code == 0, res.err
    assert [
        (m["channel"], m["status"], m["reason"] if m["status"] != "failed" else "*")
        for m in res.messages()
    ] == [
        ("email", "suppressed", "no_address"),
        ("sms", "failed", "*"),
    ]


def test_all_channels_suppressed_the_run_still_moves_on(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a, fallback: [email]}
          next: w
        w:
          wait: 1h
          next: end
        """,
    )
    res = _sim(p, {"name": "nobody"}, "2026-03-01T10:00:00Z")
    assert [(m["channel"], m["reason"]) for m in res.messages()] == [
        ("sms", "no_address"),
        ("email", "no_address"),
    ]
    assert [ln["at"] for ln in res.of("completed")] == ["2026-03-01T11:00:00Z"]


def test_no_policies_file_means_no_caps_no_quiet_hours_no_opt_in(p):
    _project(
        p,
        """
        a:
          send: {channel: sms, template: t/a}
          next: b
        b:
          send: {channel: sms, template: t/b}
          next: c
        c:
          send: {channel: sms, template: t/c}
          next: end
        """,
    )
    res = _sim(p, ADDR, "2026-03-01T03:00:00Z")
    assert [(m["at"], m["status"]) for m in res.messages()] == [
        ("2026-03-01T03:00:00Z", "sent")
    ] * 3
