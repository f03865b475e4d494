"""engine.yaml_source: positions, duplicate keys, syntax errors and YAML 1.2-style scalars."""

from __future__ import annotations

from typing import Any

import pytest

from engine.yaml_source import load_yaml

JOURNEY = """\
id: cart_abandon
trigger:
  event: Product Added
steps:
  wait_an_hour:
    wait: 1h
    next: end
tags:
  - a
  - {k: v}
"""


@pytest.fixture
def doc() -> Any:
    return load_yaml(JOURNEY, "j.yaml")


def test_data_is_built(doc: Any) -> None:
    assert doc.problems == []
    assert doc.file == "j.yaml"
    assert doc.data["steps"]["wait_an_hour"] == {"wait": "1h", "next": "end"}
    assert doc.data["tags"] == ["a", {"k": "v"}]


@pytest.mark.parametrize(
    ("path", "value_pos", "key_pos"),
    [
        (("id",), (1, 5), (1, 1)),
        (("trigger", "event"), (3, 10), (3, 3)),
        (("steps", "wait_an_hour"), (6, 5), (5, 3)),
        (("steps", "wait_an_hour", "next"), (7, 11), (7, 5)),
        (("tags", 1, "k"), (10, 9), (10, 6)),
    ],
)
def test_positions_are_one_based(
    doc: Any, path: tuple[Any, ...], value_pos: tuple[int, int], key_pos: tuple[int, int]
) -> None:
    assert doc.position(path) == value_pos
    assert doc.position(path, key=True) == key_pos


def test_list_items_have_value_positions(doc: Any) -> None:
    assert doc.position(("tags", 0)) == (9, 5)
    assert doc.position(("tags", 1)) == (10, 5)


def test_missing_path_falls_back_to_nearest_ancestor_key(doc: Any) -> None:
    # a missing field of an existing step: the step's key
    assert doc.position(("steps", "wait_an_hour", "send")) == (5, 3)
    # two levels missing: the nearest key that exists
    assert doc.position(("steps", "nope", "wait")) == (4, 1)
    assert doc.position(("steps", "nope", "wait"), key=True) == (4, 1)


def test_missing_top_level_path_is_start_of_file(doc: Any) -> None:
    assert doc.position(("name",)) == (1, 1)


def test_duplicate_key_is_a_problem_at_the_second_key() -> None:
    text = "steps:\n  s1:\n    wait: 1h\n  s1:\n    wait: 2h\n"
    doc = load_yaml(text, "d.yaml")
    assert len(doc.problems) == 1
    problem = doc.problems[0]
    assert (problem.line, problem.column) == (4, 3)
    assert "duplicate key 's1'" in problem.message
    # the first definition is kept
    assert doc.data["steps"]["s1"] == {"wait": "1h"}


def test_every_repeat_of_a_key_is_reported() -> None:
    doc = load_yaml("a: 1\na: 2\na: 3\n", "d.yaml")
    assert [p.line for p in doc.problems] == [2, 3]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: b\n  c: [\n", 2),
        ("a: [1, 2\nb: 3\n", 2),
        ('a: "unterminated\n', 2),
        ("a: *nope\n", 1),
        ("a:\n\tb: 1\n", 2),
        ("a: 1\n---\nb: 2\n", 2),
    ],
)
def test_syntax_errors_are_problems_not_exceptions(text: str, line: int) -> None:
    doc = load_yaml(text, "bad.yaml")
    assert doc.data is None
    assert len(doc.problems) == 1
    assert doc.problems[0].line == line
    assert doc.problems[0].message.startswith("invalid YAML")


def test_python_tags_are_refused_safely() -> None:
    doc = load_yaml("a: !!python/object/apply:os.system ['true']\nb: 1\n", "evil.yaml")
    assert len(doc.problems) == 1
    assert doc.problems[0].line == 1
    assert "python/object" in doc.problems[0].message
    assert doc.data == {"a": None, "b": 1}


def test_empty_document_is_none_without_problems() -> None:
    doc = load_yaml("", "empty.yaml")
    assert doc.data is None
    assert doc.problems == []


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("10:00", "10:00"),
        ("1:30", "1:30"),
        ("true", True),
        ("False", False),
        ("0x1f", 31),
        ("0o17", 15),
        ("1e3", 1000.0),
        ("42", 42),
        ("-7", -7),
        ("1.5", 1.5),
        ("~", None),
        ('"010"', "010"),
    ],
)
def test_yaml_12_scalars(scalar: str, expected: object) -> None:
    doc = load_yaml(f"v: {scalar}\n", "s.yaml")
    assert doc.problems == []
    value = doc.data["v"]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [("010", 10), ("08", 8), ("-09", -9), ("00", 0)],
)
def test_leading_zero_integers_are_decimal(scalar: str, expected: int) -> None:
    # YAML 1.1 (PyYAML's default) reads 010 as octal 8 and fails outright on 08.
    doc = load_yaml(f"v: {scalar}\n", "s.yaml")
    assert doc.problems == []
    assert doc.data == {"v": expected}


def test_date_looking_value_stays_text() -> None:
    doc = load_yaml("a: 2026-03-01\nb: 2026-02-30\n", "s.yaml")
    assert doc.problems == []
    assert doc.data == {"a": "2026-03-01", "b": "2026-02-30"}


def test_unbuildable_value_is_a_problem_not_an_exception() -> None:
    doc = load_yaml("a: 1\nb: !!int twelve\n", "s.yaml")
    assert [(p.line, p.column) for p in doc.problems] == [(2, 4)]
    assert doc.data["a"] == 1


def test_merge_key_override_is_not_a_duplicate() -> None:
    doc = load_yaml("base: &b {x: 1, z: 3}\nc:\n  <<: *b\n  x: 2\n", "m.yaml")
    assert doc.problems == []
    assert doc.data["c"] == {"x": 2, "z": 3}


def test_duplicate_after_merge_is_still_reported() -> None:
    doc = load_yaml("base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n  y: 3\n", "m.yaml")
    assert [(p.line, p.column) for p in doc.problems] == [(5, 3)]
    assert doc.data["c"] == {"x": 1, "y": 2}
