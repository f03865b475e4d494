"""`journey validate DIR`: compile rules of sections 1, 2, 3 and 9 (and `journey schema`)."""

from __future__ import annotations

import json
import re

import pytest

GOOD = """
id: good
name: Good
trigger:
  event: Product Added
  where: "trigger.properties.price >= 50"
entry:
  re_entry: after 7d
exit_when:
  - event: Order Completed
    where: "event.properties.total > 0"
goal:
  event: [Order Completed]
  within: 7d
start: wait_an_hour
steps:
  wait_an_hour:
    wait: 1h
    next: check
  check:
    branch:
      - when: "profile.vip"
        next: nudge
      - else: pick
  pick:
    split:
      - weight: 1
        next: nudge
      - weight: 3
        next: await_checkout
  await_checkout:
    wait_for: {event: Checkout Started, where: "event.properties.step == 1", timeout: 1d}
    on_event: end
    on_timeout: morning
  morning:
    wait: {until: "10:00"}
    next: nudge
  nudge:
    send: {channel: sms, template: t/hi, fallback: [email], ignore_frequency_cap: false}
    next: end
"""

POLICIES = """
timezone: Asia/Shanghai
quiet_hours:
  start: "21:00"
  end: "08:00"
  channels: [sms, push, wecom]
  action: defer
frequency_caps:
  - {channel: sms, limit: 1, per: 1d}
  - {channel: any, limit: 5, per: 7d}
opt_in_channels: [sms]
"""


def _templates(p) -> None:
    p.template("t/hi.sms.j2", "Hi")
    p.template(
        "t/hi.email.j2", "{% block subject %}S{% endblock %}{% block html %}<p>H</p>{% endblock %}"
    )


def test_a_valid_project_validates_with_exit_0(p):
    _templates(p)
    p.journey(GOOD)
    p.policies(POLICIES)
    res = p.validate()
    assert res.code == 0, res.both
    assert not re.search(r"\.yaml:\d+:\d+: ", res.both)


def test_policies_yaml_is_not_a_journey(p):
    _templates(p)
    p.journey(GOOD)
    p.policies("timezone: UTC\n")
    assert p.validate().code == 0


def test_non_yaml_files_in_the_journeys_dir_are_ignored(p):
    _templates(p)
    p.journey(GOOD)
    (p.journeys / "README.md").write_text("# notes: not a journey\n", encoding="utf-8")
    res = p.validate()
    assert res.code == 0, res.both


def _good_with(p, old: str, new: str, filename: str = "good.yaml") -> None:
    assert old in GOOD, old
    _templates(p)
    p.journey(GOOD.replace(old, new, 1), filename=filename)


def test_unknown_top_level_key_with_did_you_mean(p, compile_error):
    _good_with(p, "trigger:\n", "triggr:\n")
    compile_error(p.validate(), "good.yaml", "triggr", "trigger")


def test_unknown_step_key_with_did_you_mean(p, compile_error):
    _good_with(p, "    wait: 1h\n    next: check", "    wait: 1h\n    nxt: check")
    compile_error(p.validate(), "good.yaml", "nxt", "next")


def test_unknown_send_key_with_did_you_mean(p, compile_error):
    _good_with(p, "send: {channel: sms,", "send: {chanel: sms,")
    compile_error(p.validate(), "good.yaml", "chanel", "channel")


@pytest.mark.parametrize(
    ("old", "new", "typo", "right"),
    [
        ("  re_entry: after 7d", "  re_entri: after 7d", "re_entri", "re_entry"),
        (
            '  where: "trigger.properties.price >= 50"',
            '  wher: "trigger.properties.price >= 50"',
            "wher",
            "where",
        ),
        ("  within: 7d", "  withn: 7d", "withn", "within"),
        ("timeout: 1d}", "timout: 1d}", "timout", "timeout"),
        ("    on_timeout: morning", "    on_timout: morning", "on_timout", "on_timeout"),
        ("description", "descripton", "descripton", "description"),
    ],
)
def test_unknown_nested_keys_with_did_you_mean(p, compile_error, old, new, typo, right):
    if old == "description":
        _good_with(p, "name: Good\n", "name: Good\ndescripton: typo\n")
    else:
        _good_with(p, old, new)
    compile_error(p.validate(), "good.yaml", typo, right)


def test_error_location_points_at_the_offending_line(p):
    _templates(p)
    path = p.journey(GOOD.replace("start: wait_an_hour", "strat: wait_an_hour"))
    line_no = path.read_text().splitlines().index("strat: wait_an_hour") + 1
    res = p.validate()
    assert res.code == 1
    assert re.search(rf"good\.yaml:{line_no}:\d+: .*strat", res.both), res.both


def test_missing_start_target(p, compile_error):
    _good_with(p, "start: wait_an_hour", "start: wait_a_day")
    compile_error(p.validate(), "good.yaml", "wait_a_day")


@pytest.mark.parametrize(
    ("old", "new", "missing"),
    [
        ("    next: check", "    next: chekc", "chekc"),
        ("on_timeout: morning", "on_timeout: evening", "evening"),
        ("on_event: end", "on_event: finish", "finish"),
        ("      - else: pick", "      - else: pik", "pik"),
        ("        next: await_checkout", "        next: await_chekout", "await_chekout"),
    ],
)
def test_unknown_targets(p, compile_error, old, new, missing):
    _good_with(p, old, new)
    compile_error(p.validate(), "good.yaml", missing)


def test_unreachable_step(p, compile_error):
    _good_with(p, "steps:\n", "steps:\n  orphan_step:\n    wait: 1h\n    next: end\n")
    compile_error(p.validate(), "good.yaml", "orphan_step")


ZERO_TIME_CYCLE = """
id: loop
name: Loop
trigger: {event: Ping}
start: nag
steps:
  nag:
    send: {channel: sms, template: t/hi}
    next: check_again
  check_again:
    branch:
      - when: "profile.again"
        next: nag
      - else: end
"""


def test_cycle_through_steps_that_take_no_time_is_an_error(p, compile_error):
    _templates(p)
    p.journey(ZERO_TIME_CYCLE)
    res = p.validate()
    compile_error(res, "loop.yaml")
    assert "nag" in res.both or "check_again" in res.both, res.both


def test_self_loop_branch_is_a_zero_time_cycle(p, compile_error):
    p.journey(
        """
        id: spin
        name: Spin
        trigger: {event: Ping}
        start: spin_step
        steps:
          spin_step:
            branch:
              - when: "profile.x"
                next: end
              - else: spin_step
        """
    )
    compile_error(p.validate(), "spin.yaml", "spin_step")


def test_cycle_through_a_wait_is_valid(p):
    _templates(p)
    p.journey(
        ZERO_TIME_CYCLE.replace("next: check_again", "next: pause").replace(
            "steps:\n", "steps:\n  pause:\n    wait: 1d\n    next: check_again\n"
        )
    )
    res = p.validate()
    assert res.code == 0, res.both


def test_cycle_through_a_wait_for_is_valid(p):
    _templates(p)
    p.journey(
        ZERO_TIME_CYCLE.replace("next: check_again", "next: listen").replace(
            "steps:\n",
            "steps:\n  listen:\n    wait_for: {event: Pong, timeout: 1d}\n"
            "    on_event: check_again\n    on_timeout: end\n",
        )
    )
    res = p.validate()
    assert res.code == 0, res.both


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"profile.vip"', '"profile.vip and"'),
        ('"trigger.properties.price >= 50"', '"trigger.properties.price >= >= 50"'),
        ('"event.properties.total > 0"', '"event.properties.total > (0"'),
        ('"event.properties.step == 1"', '"event.properties.step == 1 }}"'),
    ],
)
def test_bad_expression(p, compile_error, old, new):
    _good_with(p, old, new)
    compile_error(p.validate(), "good.yaml")


def test_bad_inline_template_syntax(p, compile_error):
    p.journey(
        """
        id: inline
        name: Inline
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send: {channel: sms, content: {text: "Hi {{ profile.name "}}
            next: end
        """
    )
    compile_error(p.validate(), "inline.yaml")


def test_bad_template_file_syntax(p):
    p.template("t/hi.sms.j2", "Hi {% if profile.vip %}VIP")
    p.template("t/hi.email.j2", "{% block subject %}S{% endblock %}{% block html %}H{% endblock %}")
    p.journey(GOOD)
    res = p.validate()
    assert res.code == 1, res.both
    assert "hi.sms.j2" in res.both, res.both


def test_unknown_channel(p, compile_error):
    p.template("t/hi.fax.j2", "Hi")
    _good_with(
        p,
        "send: {channel: sms, template: t/hi, fallback: [email]",
        "send: {channel: fax, template: t/hi, fallback: [email]",
    )
    compile_error(p.validate(), "good.yaml", "fax")


def test_unknown_fallback_channel(p, compile_error):
    _good_with(p, "fallback: [email]", "fallback: [pigeon]")
    compile_error(p.validate(), "good.yaml", "pigeon")


def test_missing_template_for_primary_channel(p, compile_error):
    _good_with(p, "template: t/hi,", "template: t/bye,")
    compile_error(p.validate(), "good.yaml", "t/bye")


def test_missing_template_for_fallback_channel(p, compile_error):
    p.template("t/hi.sms.j2", "Hi")
    p.journey(GOOD)
    compile_error(p.validate(), "good.yaml", "email")


def test_branch_without_else(p, compile_error):
    _good_with(p, "      - else: pick", '      - when: "true"\n        next: pick')
    compile_error(p.validate(), "good.yaml", "else")


def test_branch_else_not_last(p, compile_error):
    _good_with(
        p,
        '      - when: "profile.vip"\n        next: nudge\n      - else: pick',
        '      - else: pick\n      - when: "profile.vip"\n        next: nudge',
    )
    compile_error(p.validate(), "good.yaml")


def test_duplicate_journey_ids_across_files(p):
    _templates(p)
    p.journey(GOOD, filename="one.yaml")
    p.journey(GOOD, filename="two.yaml")
    res = p.validate()
    assert res.code == 1
    assert re.search(r"(one|two)\.yaml:\d+:\d+: ", res.both), res.both
    assert "good" in res.both


def test_step_named_end(p, compile_error):
    _good_with(p, "steps:\n", "steps:\n  end:\n    wait: 1h\n    next: nudge\n")
    compile_error(p.validate(), "good.yaml", "end")


def test_duplicate_top_level_yaml_key(p, compile_error):
    _good_with(p, "start: wait_an_hour\n", "start: wait_an_hour\nstart: nudge\n")
    compile_error(p.validate(), "good.yaml", "start")


def test_duplicate_step_name(p, compile_error):
    _good_with(p, "  nudge:\n", "  morning:\n    wait: 1h\n    next: nudge\n  nudge:\n")
    compile_error(p.validate(), "good.yaml", "morning")


def test_inline_content_with_fallback_must_give_each_channel_its_parts(p, compile_error):
    p.journey(
        """
        id: inline
        name: Inline
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send:
              channel: sms
              fallback: [email]
              content:
                sms: {text: "hi"}
            next: end
        """
    )
    compile_error(p.validate(), "inline.yaml", "email")


def test_inline_content_with_fallback_flat_parts_is_an_error(p, compile_error):
    p.journey(
        """
        id: inline
        name: Inline
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send:
              channel: sms
              fallback: [email]
              content: {text: "hi"}
            next: end
        """
    )
    compile_error(p.validate(), "inline.yaml")


def test_inline_content_missing_a_required_part(p, compile_error):
    p.journey(
        """
        id: inline
        name: Inline
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send:
              channel: email
              content: {subject: "only a subject"}
            next: end
        """
    )
    compile_error(p.validate(), "inline.yaml", "html")


def test_inline_content_with_fallback_complete_is_valid(p):
    p.journey(
        """
        id: inline
        name: Inline
        trigger: {event: Ping}
        start: a
        steps:
          a:
            send:
              channel: sms
              fallback: [email, push]
              content:
                sms: {text: "hi"}
                email: {subject: "s", html: "<p>h</p>"}
                push: {title: "t", body: "b"}
            next: end
        """
    )
    res = p.validate()
    assert res.code == 0, res.both


def test_send_without_template_or_content(p, compile_error):
    _good_with(p, "send: {channel: sms, template: t/hi,", "send: {channel: sms,")
    compile_error(p.validate(), "good.yaml")


def test_every_error_is_reported_across_files(p):
    _templates(p)
    p.journey(
        GOOD.replace("id: good", "id: first_bad").replace("next: check", "next: chekc"),
        filename="first_bad.yaml",
    )
    p.journey(
        GOOD.replace("id: good", "id: second_bad").replace("wait: 1h", "wait: 0s"),
        filename="second_bad.yaml",
    )
    p.journey(GOOD)
    res = p.validate()
    assert res.code == 1
    assert re.search(r"first_bad\.yaml:\d+:\d+: ", res.both), res.both
    assert re.search(r"second_bad\.yaml:\d+:\d+: ", res.both), res.both
    assert "chekc" in res.both
    assert not re.search(r"\bgood\.yaml:\d+:\d+: ", res.both), res.both


def test_every_error_in_one_file_is_reported(p):
    _templates(p)
    p.journey(
        GOOD.replace("next: check", "next: chekc")
        .replace("wait: 1h", "wait: 5x")
        .replace("timeout: 1d", "timeout: 0s")
    )
    res = p.validate()
    assert res.code == 1
    errors = re.findall(r"good\.yaml:\d+:\d+: ", res.both)
    assert len(errors) >= 3, res.both
    assert "chekc" in res.both


@pytest.mark.parametrize("bad_id", ["Cart-Abandon", "1cart", "cart abandon", "Cart"])
def test_bad_journey_id(p, compile_error, bad_id):
    _good_with(p, "id: good", f'id: "{bad_id}"')
    compile_error(p.validate(), "good.yaml")


@pytest.mark.parametrize("bad_step", ["Nudge", "send-sms", "2nd"])
def test_bad_step_name(p, compile_error, bad_step):
    _good_with(p, "steps:\n", f'steps:\n  "{bad_step}":\n    wait: 1h\n    next: end\n')
    compile_error(p.validate(), "good.yaml")


@pytest.mark.parametrize(
    ("old", "key"),
    [
        ("name: Good\n", "name"),
        ("start: wait_an_hour\n", "start"),
        ("id: good\n", "id"),
    ],
)
def test_missing_required_field(p, compile_error, old, key):
    _good_with(p, old, "")
    compile_error(p.validate(), "good.yaml", key)


def test_missing_trigger(p, compile_error):
    _good_with(
        p, 'trigger:\n  event: Product Added\n  where: "trigger.properties.price >= 50"\n', ""
    )
    compile_error(p.validate(), "good.yaml", "trigger")


def test_goal_requires_within(p, compile_error):
    _good_with(p, "  within: 7d\n", "")
    compile_error(p.validate(), "good.yaml", "within")


@pytest.mark.parametrize("value", ["sometimes", "after", "after soon", "after 0s"])
def test_bad_re_entry(p, compile_error, value):
    _good_with(p, "re_entry: after 7d", f"re_entry: {value}")
    compile_error(p.validate(), "good.yaml")


def test_yaml_syntax_error_names_the_location(p, compile_error):
    _templates(p)
    p.journey("id: broken\nname: [unclosed\nstart: a\n", filename="broken.yaml")
    compile_error(p.validate(), "broken.yaml")


@pytest.mark.parametrize(
    "policies",
    [
        "timezone: Mars/Olympus_Mons\n",
        "timezon: UTC\n",
        'quiet_hours: {start: "21:00", end: "08:00", action: delay}\n',
        'quiet_hours: {start: "27:00", end: "08:00"}\n',
        "frequency_caps:\n  - {channel: sms, limit: 1, per: 0s}\n",
        "opt_in_channels: [carrier_pigeon]\n",
    ],
)
def test_bad_policies(p, compile_error, policies):
    _templates(p)
    p.journey(GOOD)
    p.policies(policies)
    compile_error(p.validate(), "policies.yaml")


def test_schema_command_prints_a_json_schema(p):
    res = p.run(["schema"])
    assert res.code == 0, res.err
    schema = json.loads(res.out)
    assert isinstance(schema, dict)
    props = schema.get("properties", {})
    assert "steps" in props, list(props)
    assert "trigger" in props and "start" in props
