"""Templates and conditions cannot exhaust the process: work is bounded while rendering,
a render has a step budget and a time limit, and what is visible statically is refused
at compile time (so ``journey validate`` reports it).

Memory is measured with tracemalloc: a payload that built its value before the size
check took hundreds of megabytes; bounded, a render stays within a few.
"""

from __future__ import annotations

import re
import threading
import tracemalloc
from typing import Any

import jinja2
import pytest

from engine.channels import get_channel
from engine.errors import RenderError
from engine.expressions import ExpressionSyntaxError, check_expression, compile_condition
from engine.rendering import MessageParts, compile_inline_part, compile_template_parts
from engine.template_limits import MAX_TEXT, LimitExceeded, Limits, limited

MB = 1024 * 1024


def render(text: str, **scope: Any) -> str:
    parts = MessageParts("test", {"text": compile_inline_part(text, "text")})
    return parts.render(scope)["text"]


def refused(text: str, **scope: Any) -> tuple[str, int]:
    """Render ``text``, which must fail; returns the error and the peak memory, and fails
    (rather than hang) when the render does not end within a minute."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        tracemalloc.start()
        try:
            render(text, **scope)
        except RenderError as exc:
            outcome["error"] = str(exc)
        finally:
            outcome["peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), f"the render of {text!r} did not end"
    assert "error" in outcome, f"{text!r} rendered"
    return outcome["error"], outcome["peak"]


# --------------------------------------------------------------------------- the payloads

# Each payload with its sizes passed in, so nothing about it is known at compile time.
RUNTIME_PAYLOADS = [
    pytest.param("{{ 'x' * n }}", {"n": 10**8}, "repeating", id="repetition"),
    pytest.param(
        "{{ range(n)|list|join * m }}", {"n": 10**4, "m": 10**4}, "repeating", id="join-repeat"
    ),
    pytest.param("{{ range(n)|list|join }}", {"n": 10**5}, "range of 100,000", id="range"),
    pytest.param("{{ [s] * n }}", {"s": "x" * 1000, "n": 10**5}, "repeating", id="list"),
    pytest.param("{{ 'x'.center(n) }}", {"n": 10**8}, "pads", id="center-method"),
    pytest.param("{{ 'x'|center(n) }}", {"n": 10**8}, "pads", id="center-filter"),
    pytest.param("{{ 'y'|indent(n, true) }}", {"n": 10**8}, "pads", id="indent"),
    pytest.param("{{ f % 1 }}", {"f": "%100000000d"}, "pads", id="percent"),
    pytest.param("{{ f|format(1) }}", {"f": "%100000000d"}, "pads", id="format-filter"),
    pytest.param("{{ f.format(1) }}", {"f": "{:>100000000}"}, "pads", id="format-method"),
    pytest.param("{{ s|replace('', s) }}", {"s": "x" * 100_000}, "replace", id="replace"),
    pytest.param("{{ s.replace('', s) }}", {"s": "x" * 100_000}, "replace", id="replace-method"),
    pytest.param("{{ n ** m }}", {"n": 10, "m": 10**7}, "power", id="power"),
    pytest.param(
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        {},
        "joined text",
        id="doubling-with-tilde",
    ),
    pytest.param(
        "{% set ns = namespace(s=['x']) %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        {},
        "sum",
        id="doubling-with-plus",
    ),
    pytest.param(
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}"
        "{% endmacro %}{{ d('x', 60) }}",
        {},
        "joined text",
        id="doubling-macro",
    ),
    pytest.param(
        "{% macro m() %}{% for i in range(10000) %}{{ s }}{% endfor %}{% endmacro %}"
        "{{ m()|length }}",
        {"s": "x" * 30_000},
        "into blocks",
        id="macro-buffer",
    ),
    pytest.param(
        "{% set big %}{% for i in range(10000) %}{{ s }}{% endfor %}{% endset %}{{ big|length }}",
        {"s": "x" * 30_000},
        "into blocks",
        id="set-block-buffer",
    ),
    pytest.param("{{ [s, s, s, s, s] }}", {"s": "x" * 100_000}, "value written", id="str-of-list"),
    pytest.param(
        "{{ items|join(sep) }}", {"items": ["a"] * 1000, "sep": "-" * 1000}, "joined", id="join"
    ),
    pytest.param(
        "{{ sep.join(items) }}",
        {"items": ["a"] * 10_000, "sep": "-" * 100_000},
        "joined",
        id="join-method",
    ),
]


@pytest.mark.parametrize(("text", "scope", "why"), RUNTIME_PAYLOADS)
def test_expensive_payloads_fail_the_message_within_bounded_memory(
    text: str, scope: dict[str, Any], why: str
) -> None:
    error, peak = refused(text, **scope)
    assert why in error, error
    assert "part 'text'" in error
    assert peak < 20 * MB, f"{peak / MB:.0f} MB"


def test_nested_loops_run_out_of_steps() -> None:
    error, _peak = refused(
        "{% for a in range(n) %}{% for b in range(n) %}{% endfor %}{% endfor %}", n=10_000
    )
    assert "steps of work" in error


def test_a_loop_over_data_counts_its_steps_too() -> None:
    template = compile_inline_part(
        "{% for a in xs %}{% for b in xs %}{{ '' }}{% endfor %}{% endfor %}", "text"
    )
    context = template.template.new_context({"xs": list(range(5000))})
    budget = Limits(steps=250_000, seconds=600)  # only the steps can stop it
    with pytest.raises(LimitExceeded, match="steps of work"), limited(budget):
        "".join(template.render_function()(context))


def test_a_render_has_a_time_limit() -> None:
    template = compile_inline_part(
        "{% for a in range(n) %}{% for b in range(n) %}{% endfor %}{% endfor %}", "text"
    )
    context = template.template.new_context({"n": 10_000})
    budget = Limits(steps=10**12, seconds=0.05)
    with pytest.raises(LimitExceeded, match=r"longer than 0\.05 s"), limited(budget):
        "".join(template.render_function()(context))


def test_recursion_is_bounded() -> None:
    error, _peak = refused("{% macro f(n) %}{{ f(n + 1) }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
    assert "RecursionError" in error or "steps of work" in error


# --------------------------------------------------------------------------- static checks


STATIC_PAYLOADS = [
    ("{{ 'x' * 10**8 }}", "repeating str 100,000,000 times"),
    ("{{ range(10**5)|list|join * 10000 }}", "range of 100,000 numbers"),
    ("{{ lipsum(10**6) }}", "lipsum() is not available"),
    ("{{ lipsum() }}", "lipsum() is not available"),
    ("{{ 'ab'|center(10**9) }}", "pads"),
    ("{{ 2 ** 100000 }}", "power"),
    ("hi\n\n{{ ('x' * 1000) ~ ('y' * 300000) }}", "repeating str 300,000 times"),
]


@pytest.mark.parametrize(("text", "why"), STATIC_PAYLOADS)
def test_what_is_visible_statically_is_refused_when_compiling(text: str, why: str) -> None:
    with pytest.raises(jinja2.TemplateSyntaxError, match="over the template limits") as caught:
        compile_inline_part(text, "text")
    assert why in caught.value.message
    email = get_channel("email")
    assert email is not None
    source = "{% block subject %}s{% endblock %}{% block html %}" + text + "{% endblock %}"
    with pytest.raises(jinja2.TemplateSyntaxError, match=re.escape(why)):
        compile_template_parts(source, "t.email.j2", email)


def test_the_static_error_names_the_line() -> None:
    with pytest.raises(jinja2.TemplateSyntaxError) as caught:
        compile_inline_part("line one\nline two\n{{ lipsum(5) }}", "text")
    assert caught.value.lineno == 3


def test_conditions_are_checked_statically_too() -> None:
    with pytest.raises(ExpressionSyntaxError, match="over the template limits"):
        check_expression("(range(10**6)|list|length) > 0")
    with pytest.raises(ExpressionSyntaxError, match="lipsum"):
        check_expression("lipsum(10**6)|length > 5")


def test_an_expensive_condition_is_false() -> None:
    condition = compile_condition("(range(n)|list|join * m)|length > 0 or [1] * 10**3 == []")
    assert condition({"n": 10_000, "m": 10_000}) is False
    loops = compile_condition("xs|map('string')|join|length > 0")
    assert loops({"xs": list(range(100))}) is True


# --------------------------------------------------------------------------- what still works


def test_ordinary_templates_render_as_before() -> None:
    text = (
        "{% macro item(p) %}[{{ p.name|title }}: {{ '%.2f'|format(p.price) }}]{% endmacro %}"
        "{% set intro %}Hi {{ name }}{% endset %}{{ intro }}! "
        "{% for p in products if p.price > 1 %}{{ loop.index }}/{{ loop.length }}"
        "{{ item(p) }}{% if not loop.last %}, {% endif %}{% endfor %} "
        "{{ 'ab' * 3 }} {{ [1, 2] + [3] }} {{ 'x' ~ 'y' }} {{ range(3)|list|join('-') }} "
        "{{ '{:>4}'.format(7) }} {{ '%03d' % 7 }} {{ 2 ** 10 }} {{ 'a'.center(5, '*') }} "
        "{% filter upper %}loud{% endfilter %} {{ ', '.join(['a', 'b']) }}"
    )
    products = [
        {"name": "tea", "price": 3.5},
        {"name": "cup", "price": 1},
        {"name": "pot", "price": 20},
    ]
    assert render(text, name="Li", products=products) == (
        "Hi Li! 1/2[Tea: 3.50], 2/2[Pot: 20.00] ababab [1, 2, 3] xy 0-1-2    7 007 1024 "
        "**a** LOUD a, b"
    )


def test_a_recursive_loop_still_works() -> None:
    tree = [{"name": "a", "children": [{"name": "b", "children": []}]}]
    text = "{% for n in tree recursive %}{{ n.name }}({{ loop(n.children) }}){% endfor %}"
    assert render(text, tree=tree) == "a(b())"


def test_a_part_up_to_the_limit_renders() -> None:
    assert len(render("{{ 'x' * n }}", n=MAX_TEXT)) == MAX_TEXT
