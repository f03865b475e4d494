"""engine.expressions: sandboxed conditions that are false whenever they cannot be evaluated."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.expressions import (
    ExpressionSyntaxError,
    check_expression,
    compile_condition,
    make_sandbox,
)


@pytest.fixture
def scope() -> dict[str, Any]:
    return {
        "profile": {"age": 30, "name": "Ann", "tags": ["vip"], "locale": "zh-CN"},
        "trigger": {
            "event": "Product Added",
            "properties": {"price": 60, "items": 3, "values": [1, 2]},
        },
        "event": {"event": "Product Added", "properties": {}},
        "user_id": "u1",
        "now": datetime(2026, 3, 1, tzinfo=UTC),
    }


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("profile.age > 18", True),
        ("profile.age > 40", False),
        ("trigger.properties.price >= 50 and 'vip' in profile.tags", True),
        ("user_id == 'u1'", True),
        ("now.year == 2026", True),
        ("profile.missing is not defined", True),
    ],
)
def test_condition_true_and_false(scope: dict[str, Any], source: str, expected: bool) -> None:
    assert compile_condition(source)(scope) is expected


@pytest.mark.parametrize(
    "source",
    [
        "profile.missing",
        "profile.missing == None",
        "profile.missing.deeper",
        "no_such_name",
        "no_such_name or true and false",
    ],
)
def test_missing_name_or_attribute_is_false(scope: dict[str, Any], source: str) -> None:
    assert compile_condition(source)(scope) is False


def test_type_error_is_false(scope: dict[str, Any]) -> None:
    assert compile_condition('profile.age > "x"')(scope) is False


@pytest.mark.parametrize(
    "source",
    [
        "''.__class__.__mro__",
        "profile.__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "profile['__class__']",
        "trigger.properties.price.__class__",
    ],
)
def test_sandbox_refusals_are_false_and_never_raise(scope: dict[str, Any], source: str) -> None:
    # Each would be truthy in plain Python: False proves the sandbox refused it.
    assert compile_condition(source)(scope) is False


def test_dict_key_wins_over_dict_method(scope: dict[str, Any]) -> None:
    assert compile_condition("trigger.properties.items == 3")(scope) is True
    assert compile_condition("trigger.properties.values == [1, 2]")(scope) is True


def test_sandbox_getattr_prefers_key_and_falls_back_to_method() -> None:
    env = make_sandbox()
    assert env.getattr({"items": 5}, "items") == 5
    assert callable(env.getattr({"x": 5}, "items"))


@pytest.mark.parametrize("source", ["profile.age >", "a b", "((", "{% if %}", ""])
def test_syntax_error_raises(source: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match="invalid expression"):
        compile_condition(source)


def test_syntax_error_is_a_value_error() -> None:
    assert issubclass(ExpressionSyntaxError, ValueError)


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_check_expression_rejects_non_strings_and_blanks(bad: object) -> None:
    with pytest.raises(ExpressionSyntaxError):
        check_expression(bad)


def test_check_expression_returns_the_source() -> None:
    assert check_expression("profile.age > 1") == "profile.age > 1"


def test_compiled_once_per_source() -> None:
    first = compile_condition("profile.age >= 21")
    assert compile_condition("profile.age >= 21") is first
    assert compile_condition("profile.age >= 22") is not first


@pytest.mark.parametrize(
    "source",
    ["profile.update({'age': 99})", "profile.tags.append('hacked')", "profile.pop('age')"],
)
def test_immutable_sandbox_refuses_mutation(scope: dict[str, Any], source: str) -> None:
    before = {"age": 30, "name": "Ann", "tags": ["vip"], "locale": "zh-CN"}
    assert compile_condition(source)(scope) is False
    assert scope["profile"] == before
