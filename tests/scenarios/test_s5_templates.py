"""Spec section 5: messages and templates — resolution, parts, locales, autoescape."""
# ruff: noqa: E501  (journey YAML, templates and JSON events read best unwrapped)

from __future__ import annotations

import re

import pytest

ALL_ADDRESSES = {
    "phone": "+15550100",
    "email": "u1@example.com",
    "wecom_userid": "wx_u1",
    "push_token": "tok-1",
}


def _send_journey(p, channel: str, template: str = "cart/nudge", extra: str = "") -> None:
    p.journey(
        f"""
        id: cart
        name: Cart
        trigger: {{event: Product Added}}
        start: nudge
        steps:
          nudge:
            send: {{channel: {channel}, template: {template}{extra}}}
            next: end
        """
    )


def _run(p, traits=None, user="u1"):
    return p.simulate(
        [
            p.identify(user, {**ALL_ADDRESSES, **(traits or {})}, "2026-03-01T09:00:00Z"),
            p.track(user, "Product Added", "2026-03-01T10:00:00Z", {"name": "Shoes"}),
        ]
    )


def test_sms_template_path_and_whole_file_part(p):
    p.template("cart/nudge.sms.j2", "{{ trigger.properties.name }} are waiting")
    p.template("cart/nudge.email.j2", "{% block subject %}wrong file{% endblock %}")
    _send_journey(p, "sms")
    res = _run(p)
    assert res.code == 0, res.err
    (msg,) = res.messages()
    assert (msg["channel"], msg["to"], msg["status"]) == ("sms", "+15550100", "sent")
    assert msg["content"] == {"text": "Shoes are waiting"}


def test_sms_template_with_a_text_block(p):
    p.template(
        "cart/nudge.sms.j2", "{% block text %}Block {{ trigger.properties.name }}{% endblock %}"
    )
    _send_journey(p, "sms")
    (msg,) = _run(p).messages()
    assert msg["content"] == {"text": "Block Shoes"}


def test_email_template_parts(p):
    p.template(
        "cart/nudge.email.j2",
        "{% block subject %}About {{ trigger.properties.name }}{% endblock %}"
        "{% block html %}<p>{{ trigger.properties.name }}</p>{% endblock %}"
        "{% block text %}Plain {{ trigger.properties.name }}{% endblock %}",
    )
    _send_journey(p, "email")
    (msg,) = _run(p).messages()
    assert (msg["channel"], msg["to"], msg["status"]) == ("email", "u1@example.com", "sent")
    assert msg["content"] == {
        "subject": "About Shoes",
        "html": "<p>Shoes</p>",
        "text": "Plain Shoes",
    }


def test_email_text_part_is_optional(p):
    p.template(
        "cart/nudge.email.j2",
        "{% block subject %}S{% endblock %}{% block html %}<b>H</b>{% endblock %}",
    )
    _send_journey(p, "email")
    assert p.validate().code == 0
    (msg,) = _run(p).messages()
    assert msg["status"] == "sent"
    assert msg["content"]["subject"] == "S"
    assert msg["content"]["html"] == "<b>H</b>"


def test_wecom_template_whole_file_is_the_content_part(p):
    p.template("cart/nudge.wecom.j2", "**{{ trigger.properties.name }}** in your cart")
    _send_journey(p, "wecom")
    (msg,) = _run(p).messages()
    assert (msg["channel"], msg["to"], msg["status"]) == ("wecom", "wx_u1", "sent")
    assert msg["content"] == {"content": "**Shoes** in your cart"}


def test_push_template_parts_with_optional_url(p):
    p.template(
        "cart/nudge.push.j2",
        "{% block title %}Cart{% endblock %}{% block body %}{{ trigger.properties.name }}{% endblock %}",
    )
    p.template(
        "cart/link.push.j2",
        "{% block title %}Cart{% endblock %}{% block body %}B{% endblock %}"
        "{% block url %}https://shop.example/cart{% endblock %}",
    )
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: one
        steps:
          one:
            send: {channel: push, template: cart/nudge}
            next: two
          two:
            send: {channel: push, template: cart/link}
            next: end
        """
    )
    assert p.validate().code == 0
    one, two = _run(p).messages()
    assert (one["to"], one["status"]) == ("tok-1", "sent")
    assert one["content"]["title"] == "Cart"
    assert one["content"]["body"] == "Shoes"
    assert two["content"] == {"title": "Cart", "body": "B", "url": "https://shop.example/cart"}


def test_html_is_autoescaped_but_subject_and_text_are_not(p):
    p.template(
        "cart/nudge.email.j2",
        "{% block subject %}Hi {{ profile.name }}{% endblock %}"
        "{% block html %}<p>Hi {{ profile.name }}</p>{% endblock %}"
        "{% block text %}Hi {{ profile.name }}{% endblock %}",
    )
    _send_journey(p, "email")
    (msg,) = _run(p, {"name": "<b>Tom</b> & Co"}).messages()
    assert msg["content"] == {
        "subject": "Hi <b>Tom</b> & Co",
        "html": "<p>Hi &lt;b&gt;Tom&lt;/b&gt; &amp; Co</p>",
        "text": "Hi <b>Tom</b> & Co",
    }


def test_sms_wecom_and_push_are_not_autoescaped(p):
    p.template("t/a.sms.j2", "{{ profile.name }}")
    p.template("t/a.wecom.j2", "{{ profile.name }}")
    p.template(
        "t/a.push.j2",
        "{% block title %}{{ profile.name }}{% endblock %}{% block body %}{{ profile.name }}{% endblock %}",
    )
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: a
        steps:
          a:
            send: {channel: sms, template: t/a}
            next: b
          b:
            send: {channel: wecom, template: t/a}
            next: c
          c:
            send: {channel: push, template: t/a}
            next: end
        """
    )
    msgs = _run(p, {"name": "<i>Ann</i>"}).messages()
    assert msgs[0]["content"] == {"text": "<i>Ann</i>"}
    assert msgs[1]["content"] == {"content": "<i>Ann</i>"}
    assert msgs[2]["content"]["title"] == "<i>Ann</i>"
    assert msgs[2]["content"]["body"] == "<i>Ann</i>"


def test_inline_html_part_is_autoescaped_too(p):
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added}
        start: mail
        steps:
          mail:
            send:
              channel: email
              content:
                subject: "Hi {{ profile.name }}"
                html: "<p>{{ profile.name }}</p>"
            next: end
        """
    )
    (msg,) = _run(p, {"name": "<b>Tom</b>"}).messages()
    assert msg["content"]["subject"] == "Hi <b>Tom</b>"
    assert msg["content"]["html"] == "<p>&lt;b&gt;Tom&lt;/b&gt;</p>"


def _locale_project(p, variants: dict[str, str]) -> None:
    """variants: locale ('' = default) -> text."""
    for loc, text in variants.items():
        prefix = f"{loc}/" if loc else ""
        p.template(f"{prefix}cart/nudge.sms.j2", text)
    _send_journey(p, "sms")


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("zh-CN", "简体"),
        ("zh-TW", "中文"),  # no zh-TW variant -> zh
        ("zh", "中文"),
        ("fr", "default"),
        (None, "default"),
    ],
)
def test_locale_variant_then_language_then_default(p, locale, expected):
    _locale_project(p, {"": "default", "zh": "中文", "zh-CN": "简体"})
    traits = {"locale": locale} if locale else {}
    (msg,) = _run(p, traits).messages()
    assert msg["content"] == {"text": expected}


def test_locale_zh_cn_falls_back_to_zh_then_default(p):
    _locale_project(p, {"": "default", "zh": "中文"})
    (msg,) = _run(p, {"locale": "zh-CN"}).messages()
    assert msg["content"] == {"text": "中文"}


def test_locale_zh_cn_without_any_variant_uses_default(p):
    _locale_project(p, {"": "default", "ja": "日本語"})
    (msg,) = _run(p, {"locale": "zh-CN"}).messages()
    assert msg["content"] == {"text": "default"}


def test_default_locale_template_is_required(p, compile_error):
    _locale_project(p, {"zh-CN": "简体"})
    compile_error(p.validate(), "cart.yaml", "cart/nudge")


def test_missing_template_is_a_compile_error(p, compile_error):
    p.template(
        "cart/nudge.email.j2", "{% block subject %}s{% endblock %}{% block html %}h{% endblock %}"
    )
    _send_journey(p, "sms")  # only the email variant exists
    compile_error(p.validate(), "cart.yaml", "cart/nudge")


@pytest.mark.parametrize(
    ("channel", "body", "missing"),
    [
        ("email", "{% block subject %}only a subject{% endblock %}", "html"),
        ("email", "{% block html %}only html{% endblock %}", "subject"),
        ("push", "{% block body %}no title{% endblock %}", "title"),
        ("push", "{% block title %}no body{% endblock %}", "body"),
    ],
)
def test_template_missing_a_required_part_is_a_compile_error(p, channel, body, missing):
    p.template(f"cart/nudge.{channel}.j2", body)
    _send_journey(p, channel)
    res = p.validate()
    assert res.code == 1, res.both
    # the error may point at the journey's send step or at the template file itself
    assert re.search(r"(cart\.yaml|nudge\." + channel + r"\.j2):\d+:\d+: ", res.both), res.both
    assert missing in res.both, res.both


def test_missing_template_for_a_fallback_channel_is_a_compile_error(p, compile_error):
    p.template("cart/nudge.sms.j2", "hi")
    _send_journey(p, "sms", extra=", fallback: [email]")
    res = p.validate()
    compile_error(res, "cart.yaml", "email")


def test_fallback_channel_templates_present_compiles(p):
    p.template("cart/nudge.sms.j2", "hi")
    p.template(
        "cart/nudge.email.j2", "{% block subject %}s{% endblock %}{% block html %}h{% endblock %}"
    )
    _send_journey(p, "sms", extra=", fallback: [email]")
    res = p.validate()
    assert res.code == 0, res.both


def test_templates_option_overrides_the_templates_directory(p):
    other = p.root / "elsewhere"
    p.template("cart/nudge.sms.j2", "from the override", base=other)
    _send_journey(p, "sms")
    res = _run_with(p, templates=other)
    assert res.code == 0, res.err
    assert [m["content"] for m in res.messages()] == [{"text": "from the override"}]


def test_templates_option_wins_over_the_sibling_templates_dir(p):
    other = p.root / "elsewhere"
    p.template("cart/nudge.sms.j2", "sibling")
    p.template("cart/nudge.sms.j2", "override", base=other)
    _send_journey(p, "sms")
    res = _run_with(p, templates=other)
    assert [m["content"] for m in res.messages()] == [{"text": "override"}]


def _run_with(p, **kw):
    return p.simulate(
        [
            p.identify("u1", ALL_ADDRESSES, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
        ],
        **kw,
    )


def test_to_is_null_when_there_is_no_address(p):
    p.template("cart/nudge.sms.j2", "hi")
    _send_journey(p, "sms")
    res = p.simulate(
        [
            p.identify("u1", {"email": "u1@example.com"}, "2026-03-01T09:00:00Z"),
            p.track("u1", "Product Added", "2026-03-01T10:00:00Z"),
        ]
    )
    (msg,) = res.messages()
    assert (msg["status"], msg["reason"], msg["to"]) == ("suppressed", "no_address", None)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("Hi\n{{ 'x' * 10**8 }}", "repeating"),
        ("{{ range(10**5)|list|join * 10000 }}", "range"),
        ("{{ lipsum(10**6) }}", "lipsum"),
    ],
)
def test_validate_reports_templates_over_the_limits(p, compile_error, body, why):
    p.template("cart/nudge.sms.j2", body)
    _send_journey(p, "sms")
    res = p.validate()
    compile_error(res, "nudge.sms.j2", why)
    assert "over the template limits" in res.both


def test_validate_reports_conditions_over_the_limits(p, compile_error):
    p.template("cart/nudge.sms.j2", "hi")
    p.journey(
        """
        id: cart
        name: Cart
        trigger: {event: Product Added, where: "(range(10**6)|list|length) > 0"}
        start: nudge
        steps:
          nudge:
            send: {channel: sms, template: cart/nudge}
            next: end
        """
    )
    res = p.validate()
    compile_error(res, "cart.yaml", "range")
