"""engine.rendering: template parts per channel, escaping, strictness, caps, locale lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest

import engine.rendering as rendering
from engine.channels import ChannelSpec, get_channel
from engine.errors import RenderError
from engine.rendering import (
    MessageParts,
    TemplateStore,
    compile_inline_part,
    compile_template_parts,
    locale_chain,
)


def channel(name: str) -> ChannelSpec:
    spec = get_channel(name)
    assert spec is not None
    return spec


SCOPE: dict[str, Any] = {"profile": {"name": "<b>&</b>"}, "user_id": "u1"}
NAME = "<b>&</b>"
ESCAPED = "&lt;b&gt;&amp;&lt;/b&gt;"

EMAIL = (
    "{% block subject %}Hi {{ profile.name }}{% endblock %}"
    "{% block html %}<p>{{ profile.name }}</p>{% endblock %}"
    "{% block text %}Hello {{ profile.name }}{% endblock %}"
)


def test_sms_whole_file_is_the_text_part() -> None:
    parts, problems = compile_template_parts("Hi {{ profile.name }}!\n", "n.sms.j2", channel("sms"))
    assert problems == []
    assert parts.render(SCOPE) == {"text": f"Hi {NAME}!"}


def test_sms_block_form() -> None:
    parts, problems = compile_template_parts(
        "ignored {% block text %}Hi {{ user_id }}{% endblock %}", "n.sms.j2", channel("sms")
    )
    assert problems == []
    assert parts.render(SCOPE) == {"text": "Hi u1"}


def test_sms_with_only_other_blocks_lacks_text() -> None:
    _, problems = compile_template_parts(
        "{% block greeting %}Hi{% endblock %}", "n.sms.j2", channel("sms")
    )
    assert len(problems) == 1
    assert "block text" in problems[0]


def test_email_parts_and_escaping() -> None:
    parts, problems = compile_template_parts(EMAIL, "n.email.j2", channel("email"))
    assert problems == []
    assert parts.render(SCOPE) == {
        "subject": f"Hi {NAME}",
        "html": f"<p>{ESCAPED}</p>",
        "text": f"Hello {NAME}",
    }


def test_email_text_part_is_optional() -> None:
    source = "{% block subject %}S{% endblock %}{% block html %}<i>H</i>{% endblock %}"
    parts, problems = compile_template_parts(source, "n.email.j2", channel("email"))
    assert problems == []
    assert parts.render(SCOPE) == {"subject": "S", "html": "<i>H</i>"}


def test_email_missing_html_is_reported() -> None:
    _, problems = compile_template_parts(
        "{% block subject %}S{% endblock %}", "n.email.j2", channel("email")
    )
    assert len(problems) == 1
    assert "block html" in problems[0]


def test_email_whole_file_is_not_allowed() -> None:
    parts, problems = compile_template_parts("just text", "n.email.j2", channel("email"))
    assert len(problems) == 2
    assert any("block subject" in p for p in problems)
    assert any("block html" in p for p in problems)
    assert parts.render(SCOPE) == {}


def test_push_url_is_optional() -> None:
    source = "{% block title %}T{% endblock %}{% block body %}B {{ profile.name }}{% endblock %}"
    parts, problems = compile_template_parts(source, "n.push.j2", channel("push"))
    assert problems == []
    assert parts.render(SCOPE) == {"title": "T", "body": f"B {NAME}"}


def test_push_with_url() -> None:
    source = (
        "{% block title %}T{% endblock %}{% block body %}B{% endblock %}"
        "{% block url %}https://x.test/{{ user_id }}{% endblock %}"
    )
    parts, problems = compile_template_parts(source, "n.push.j2", channel("push"))
    assert problems == []
    assert parts.render(SCOPE)["url"] == "https://x.test/u1"


def test_push_missing_body_is_reported() -> None:
    _, problems = compile_template_parts(
        "{% block title %}T{% endblock %}", "n.push.j2", channel("push")
    )
    assert len(problems) == 1
    assert "block body" in problems[0]


@pytest.mark.parametrize(
    "source", ["**{{ profile.name }}**", "{% block content %}**{{ profile.name }}**{% endblock %}"]
)
def test_wecom_content_whole_file_or_block(source: str) -> None:
    parts, problems = compile_template_parts(source, "n.wecom.j2", channel("wecom"))
    assert problems == []
    assert parts.render(SCOPE) == {"content": f"**{NAME}**"}


def test_syntax_error_raises_template_syntax_error() -> None:
    with pytest.raises(jinja2.TemplateSyntaxError):
        compile_template_parts("{% block text %}", "n.sms.j2", channel("sms"))


def test_inline_parts_escape_only_html() -> None:
    parts = MessageParts(
        "inline",
        {p: compile_inline_part("{{ profile.name }}", p) for p in ("subject", "html", "text")},
    )
    assert parts.render(SCOPE) == {"subject": NAME, "html": ESCAPED, "text": NAME}


def test_undefined_name_raises_render_error_naming_the_part() -> None:
    parts, _ = compile_template_parts(
        EMAIL.replace("profile.name }}</p>", "nope }}</p>"), "n.email.j2", channel("email")
    )
    with pytest.raises(RenderError, match=r"n\.email\.j2: part 'html': undefined"):
        parts.render(SCOPE)


def test_undefined_attribute_raises_render_error() -> None:
    parts, _ = compile_template_parts("Hi {{ profile.first_name }}", "n.sms.j2", channel("sms"))
    with pytest.raises(RenderError, match="part 'text'"):
        parts.render(SCOPE)


@pytest.mark.parametrize(
    "body",
    [
        "{{ profile.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ profile.update({'name': 'x'}) }}",
    ],
)
def test_sandbox_violation_raises_render_error(body: str) -> None:
    scope = {"profile": {"name": "Ann"}}
    parts, _ = compile_template_parts(body, "n.sms.j2", channel("sms"))
    with pytest.raises(RenderError, match="part 'text'"):
        parts.render(scope)
    assert scope == {"profile": {"name": "Ann"}}


def test_part_size_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rendering, "MAX_PART_CHARS", 50)
    parts, _ = compile_template_parts(
        "{% for i in range(100) %}xxxxxxxxxx{% endfor %}", "n.sms.j2", channel("sms")
    )
    with pytest.raises(RenderError, match="'text' is longer than 50"):
        parts.render(SCOPE)


@pytest.mark.parametrize(
    ("cap", "failing_at", "reason"),
    [
        (50, 2, "undefined"),
        (50, 6, "is longer than 50"),  # 60 characters before the error
        (50, None, "is longer than 50"),
        (1500, 100, "undefined"),  # both well past the first chunks taken
        (1500, 170, "is longer than 1500"),
    ],
)
def test_the_cap_or_the_first_error_whichever_comes_first(
    monkeypatch: pytest.MonkeyPatch, cap: int, failing_at: int | None, reason: str
) -> None:
    """As if the size were checked after every chunk: an error in a later chunk does
    not hide a cap already passed, and a cap passed later does not hide an error."""
    monkeypatch.setattr(rendering, "MAX_PART_CHARS", cap)
    fail = "{{ profile.missing }}" if failing_at is not None else ""
    source = (
        f"{{% for i in range(200) %}}{{% if i == {failing_at or -1} %}}{fail}{{% endif %}}"
        "xxxxxxxxxx{% endfor %}"
    )
    parts, _ = compile_template_parts(source, "n.sms.j2", channel("sms"))
    with pytest.raises(RenderError, match=reason):
        parts.render(SCOPE)


def test_part_under_the_cap_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rendering, "MAX_PART_CHARS", 50)
    parts, _ = compile_template_parts("x" * 50, "n.sms.j2", channel("sms"))
    assert parts.render(SCOPE) == {"text": "x" * 50}


def test_top_level_macro_is_usable_in_blocks() -> None:
    source = (
        "{% macro hi(n) %}Hi {{ n }}{% endmacro %}{% block text %}{{ hi(user_id) }}{% endblock %}"
    )
    parts, _ = compile_template_parts(source, "n.sms.j2", channel("sms"))
    assert parts.render(SCOPE) == {"text": "Hi u1"}


@pytest.mark.parametrize(
    ("locale", "chain"),
    [
        ("zh-CN", ("zh-CN", "zh")),
        ("zh_CN", ("zh-CN", "zh")),
        ("en", ("en",)),
        (None, ()),
        ("", ()),
        ("  ", ()),
        (42, ()),
    ],
)
def test_locale_chain(locale: object, chain: tuple[str, ...]) -> None:
    assert locale_chain(locale) == chain


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    _write(tmp_path / "cart" / "nudge.sms.j2", "default")
    _write(tmp_path / "zh" / "cart" / "nudge.sms.j2", "zh")
    _write(tmp_path / "zh-cn" / "cart" / "nudge.sms.j2", "zh-CN")
    _write(tmp_path / "en" / "cart" / "other.sms.j2", "en other")
    return TemplateStore.from_directory(tmp_path)


@pytest.mark.parametrize(
    ("locale", "text"),
    [
        ("zh-CN", "zh-CN"),  # matches the directory spelled zh-cn
        ("zh_cn", "zh-CN"),
        ("zh-TW", "zh"),
        ("zh", "zh"),
        ("en", "default"),  # en exists but has no such template
        ("fr", "default"),
        (None, "default"),
    ],
)
def test_resolve_locale_fallback(store: TemplateStore, locale: object, text: str) -> None:
    parts = store.resolve("cart/nudge", channel("sms"), locale)
    assert parts is not None
    assert parts.render({}) == {"text": text}


def test_resolve_missing_template_is_none(store: TemplateStore) -> None:
    assert store.resolve("cart/missing", channel("sms"), "zh-CN") is None
    assert store.resolve("cart/nudge", channel("email"), None) is None


def test_resolve_locale_only_template(store: TemplateStore) -> None:
    parts = store.resolve("cart/other", channel("sms"), "en")
    assert parts is not None
    assert parts.render({}) == {"text": "en other"}
    assert store.resolve("cart/other", channel("sms"), "fr") is None


def test_variants_lists_default_first(store: TemplateStore) -> None:
    variants = store.variants("cart/nudge", "sms")
    assert variants[0] == (None, "cart/nudge.sms.j2")
    assert sorted(variants[1:]) == [
        ("zh", "zh/cart/nudge.sms.j2"),
        ("zh-cn", "zh-cn/cart/nudge.sms.j2"),
    ]


def test_variants_without_default(store: TemplateStore) -> None:
    assert store.variants("cart/other", "sms") == [("en", "en/cart/other.sms.j2")]


def test_path_for_and_display(tmp_path: Path) -> None:
    store = TemplateStore.from_directory(tmp_path)
    assert store.path_for("cart/nudge", "sms") == "cart/nudge.sms.j2"
    assert store.path_for("cart/nudge", "email", "zh-CN") == "zh-CN/cart/nudge.email.j2"
    assert store.display("cart/nudge.sms.j2") == f"{tmp_path}/cart/nudge.sms.j2"


def test_store_from_memory_renders_like_from_disk() -> None:
    store = TemplateStore(
        {"cart/nudge.sms.j2": "hi {{ user_id }}", "zh-CN/cart/nudge.sms.j2": "你好"}
    )
    default = store.resolve("cart/nudge", channel("sms"), None)
    chinese = store.resolve("cart/nudge", channel("sms"), "zh_CN")
    assert default is not None and default.render({"user_id": "u1"}) == {"text": "hi u1"}
    assert chinese is not None and chinese.render({}) == {"text": "你好"}


def test_resolve_on_missing_root_is_none(tmp_path: Path) -> None:
    store = TemplateStore.from_directory(tmp_path / "absent")
    assert store.resolve("cart/nudge", channel("sms"), "zh-CN") is None
    assert store.variants("cart/nudge", "sms") == []


def test_parts_know_the_names_they_read() -> None:
    """The unsubscribe link is signed only for a message whose template shows it."""
    email = get_channel("email")
    assert email is not None
    with_link, _ = compile_template_parts(
        "{% block subject %}Hi {{ profile.name }}{% endblock %}"
        "{% block html %}<a href='{{ unsubscribe_url }}'>stop</a>{% endblock %}",
        "t",
        email,
    )
    without, _ = compile_template_parts(
        "{% block subject %}Hi{% endblock %}{% block html %}{{ message_id }}{% endblock %}",
        "t",
        email,
    )
    assert with_link.reads("unsubscribe_url") and with_link.reads("profile")
    assert not without.reads("unsubscribe_url") and without.reads("message_id")
    inline = compile_inline_part(
        "{{ user_id }} {% if unsubscribe_url is defined %}x{% endif %}", "text"
    )
    assert inline.reads == frozenset({"user_id", "unsubscribe_url"})
