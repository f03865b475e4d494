"""Spec section 4: expressions — names in scope, sandbox, missing names."""

from __future__ import annotations

import pytest

PHONE = {"phone": "+15550100"}


def _one_send(p, text: str, *, trigger: str = "Ping", pause: str | None = None) -> None:
    """A journey sending one sms built from an inline `text`, then a second 'after' sms."""
    p.template("t/body.sms.j2", text)
    p.template("t/after.sms.j2", "after")
    wait = f"  pause:\n    wait: {pause}\n    next: body\n" if pause else ""
    start = "pause" if pause else "body"
    p.journey(
        "id: expr\n"
        "name: Expressions\n"
        f"trigger: {{event: {trigger}}}\n"
        f"start: {start}\n"
        "steps:\n"
        f"{wait}"
        "  body:\n"
        "    send: {channel: sms, template: t/body}\n"
        "    next: after\n"
        "  after:\n"
        "    send: {channel: sms, template: t/after}\n"
        "    next: end\n"
    )


def _run(p, traits=None, props=None, at="2026-03-01T10:00:00Z", user="u1"):
    return p.simulate(
        [
            p.identify(user, {**PHONE, **(traits or {})}, "2026-03-01T09:00:00Z"),
            p.track(user, "Ping", at, props or {"total": 99.5, "sku": "A1"}),
        ]
    )


def test_profile_trigger_event_and_user_id_are_in_scope(p):
    _one_send(
        p,
        "{{ profile.first_name }}|{{ user_id }}|{{ trigger.event }}|"
        "{{ trigger.properties.total }}|{{ event.properties.sku }}",
    )
    res = _run(p, {"first_name": "Ann"})
    assert res.code == 0, res.err
    assert res.messages(step="body")[0]["content"] == {"text": "Ann|u1|Ping|99.5|A1"}


def test_trigger_timestamp_is_available(p):
    _one_send(p, "{{ trigger.timestamp }}")
    res = _run(p)
    text = res.messages(step="body")[0]["content"]["text"]
    assert "2026-03-01" in text and "10:00" in text, text


def test_now_is_the_current_virtual_time_in_utc(p):
    _one_send(
        p,
        "{{ now.year }}-{{ now.month }}-{{ now.day }} {{ now.hour }}:{{ now.minute }} "
        "{{ now.utcoffset().total_seconds() | int }}",
        pause="1h30m",
    )
    # profile time zone must not change `now`: it is UTC
    res = _run(p, {"timezone": "Asia/Shanghai"})
    assert res.code == 0, res.err
    (msg,) = res.messages(step="body")
    assert msg["at"] == "2026-03-01T11:30:00Z"
    assert msg["content"] == {"text": "2026-3-1 11:30 0"}


def test_message_id_and_unsubscribe_url_are_template_variables(p):
    _one_send(p, "[{{ message_id }}][{{ unsubscribe_url }}]")
    res = _run(p)
    assert res.code == 0, res.err
    (msg,) = res.messages(step="body")
    assert msg["status"] == "sent"
    text = msg["content"]["text"]
    mid, unsub = text[1:-1].split("][")
    assert mid.strip() and unsub.strip(), text


@pytest.mark.parametrize(
    "body",
    [
        "Your code: {{ coupon_code }}",  # missing name
        "Hi {{ profile.first_name }}",  # missing attribute
        "{{ trigger.properties.missing.deeper }}",
        "{{ profile.first_name | upper }}",
    ],
)
def test_missing_name_or_attribute_in_template_fails_and_run_moves_on(p, body):
    _one_send(p, body)
    res = _run(p)
    assert res.code == 0, res.err
    body_msg, after_msg = res.messages()
    assert body_msg["step"] == "body"
    assert body_msg["status"] == "failed"
    assert isinstance(body_msg["reason"], str) and body_msg["reason"]
    assert body_msg["content"] is None
    assert (after_msg["step"], after_msg["status"]) == ("after", "sent")
    assert [ln["at"] for ln in res.of("completed")] == ["2026-03-01T10:00:00Z"]


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ profile.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ trigger.__class__.__init__.__globals__ }}",
        "{{ now.__class__ }}",
    ],
)
def test_sandbox_forbidden_access_fails_the_render_and_leaks_nothing(p, body):
    _one_send(p, body)
    res = _run(p)
    assert res.code == 0, res.err
    body_msg = res.messages(step="body")[0]
    assert body_msg["status"] == "failed"
    assert body_msg["content"] is None
    assert isinstance(body_msg["reason"], str) and body_msg["reason"]
    for leak in ("<class", "<module", "<built-in", "<function", "subprocess", "os.path"):
        assert leak not in res.out, leak
    assert res.messages(step="after")[0]["status"] == "sent"


def test_templates_cannot_read_files(p):
    _one_send(p, "{% include '/etc/passwd' %}{% include '../../../../../../etc/passwd' %}")
    res = _run(p)
    assert "root:" not in res.out
    assert res.messages(step="body")[0]["status"] == "failed"


CONDITION = """
id: cond
name: Conditions
trigger: {{event: Ping}}
start: check
steps:
  check:
    branch:
      - when: "{when}"
        next: yes_path
      - else: no_path
  yes_path:
    send: {{channel: sms, content: {{text: "yes"}}}}
    next: end
  no_path:
    send: {{channel: sms, content: {{text: "no"}}}}
    next: end
"""


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("profile.plan == 'pro'", "yes"),
        ("user_id == 'u1'", "yes"),
        ("trigger.properties.total > 50", "yes"),
        ("event.properties.sku == 'A1'", "yes"),
        ("now.year == 2026", "yes"),
        ("'A1' in trigger.properties.sku", "yes"),
        ("no_such_name > 3", "no"),  # missing name
        ("profile.no_such_trait > 3", "no"),  # missing attribute
        ("profile.plan > 3", "no"),  # type error
        ("''.__class__.__mro__ | length > 0", "no"),  # sandbox
        ("profile.__class__ is defined", "no"),  # sandbox, either false or raising
    ],
)
def test_condition_scope_and_errors_are_false(p, when, expected):
    p.journey(CONDITION.format(when=when))
    res = _run(p, {"plan": "pro"})
    assert res.code == 0, res.err
    assert [m["content"]["text"] for m in res.messages()] == [expected]
    assert "<class" not in res.out


def test_trigger_where_on_a_missing_property_is_false(p):
    p.journey(
        """
        id: picky
        name: Picky
        trigger:
          event: Ping
          where: "trigger.properties.price >= 50"
        start: pause
        steps:
          pause:
            wait: 1m
            next: end
        """
    )
    res = p.simulate(
        [
            p.track("u1", "Ping", "2026-03-01T10:00:00Z", {"sku": "A1"}),
            p.track("u2", "Ping", "2026-03-01T10:00:00Z", {"price": "cheap"}),
            p.track("u3", "Ping", "2026-03-01T10:00:00Z", {"price": 60}),
        ]
    )
    assert res.code == 0, res.err
    assert [ln["user_id"] for ln in res.of("entered")] == ["u3"]


def test_trigger_where_sees_profile(p):
    p.journey(
        """
        id: vip_only
        name: VIP only
        trigger:
          event: Ping
          where: "profile.vip == true"
        start: pause
        steps:
          pause:
            wait: 1m
            next: end
        """
    )
    res = p.simulate(
        [
            p.identify("u1", {"vip": True}, "2026-03-01T09:00:00Z"),
            p.identify("u2", {"vip": False}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u2", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u3", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [ln["user_id"] for ln in res.of("entered")] == ["u1"]


def test_default_filter_and_is_defined_handle_missing_traits_in_templates(p):
    _one_send(
        p,
        "Hi {{ profile.first_name | default('there') }}"
        "{% if profile.vip is defined %}, VIP{% endif %}",
    )
    res = p.simulate(
        [
            p.identify("u1", PHONE, "2026-03-01T09:00:00Z"),
            p.identify("u2", {**PHONE, "first_name": "Bo", "vip": True}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Ping", "2026-03-01T10:00:00Z"),
            p.track("u2", "Ping", "2026-03-01T10:00:00Z"),
        ]
    )
    assert res.code == 0, res.err
    assert [(m["user_id"], m["status"], m["content"]) for m in res.messages(step="body")] == [
        ("u1", "sent", {"text": "Hi there"}),
        ("u2", "sent", {"text": "Hi Bo, VIP"}),
    ]
