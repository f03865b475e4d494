"""Safe YAML loading that remembers where every key and value stood in the file.

Journey errors must name ``file:line:column``. PyYAML's composer keeps a mark on every
node, so we compose the node tree ourselves, build plain Python values from it and
record the 1-based position of each value and each mapping key by its path
(a tuple of keys and list indices). Duplicate keys, which PyYAML silently
overwrites, are reported instead.

The resolver follows YAML 1.2 where YAML 1.1 surprises authors: ``yes``/``no``/
``on``/``off`` stay strings and ``10:00`` is not the sexagesimal integer 600.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml

from engine.source import DataPath, SourceDocument, SourceProblem


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-style booleans and no sexagesimal numbers."""


_Loader.yaml_implicit_resolvers = {}
for _first, _resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items():
    _kept = [
        (tag, regexp)
        for tag, regexp in _resolvers
        if tag
        not in (
            "tag:yaml.org,2002:bool",
            "tag:yaml.org,2002:int",
            "tag:yaml.org,2002:float",
            # Journeys hold no dates; a date-looking value stays the text the author wrote.
            "tag:yaml.org,2002:timestamp",
        )
    ]
    if _kept:
        _Loader.yaml_implicit_resolvers[_first] = _kept
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    """YAML 1.2 integers: ``010`` is ten (PyYAML's 1.1 reads it as octal and fails on ``08``)."""
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text, 0)
    return int(text, 10)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_STANDARD_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null")
) | {"tag:yaml.org,2002:merge"}


def load_yaml(text: str, file: str) -> SourceDocument:
    """Load one YAML document safely. Syntax errors become ``problems``, never exceptions."""
    doc = SourceDocument(file=file, data=None, source_text=text)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _build(loader, node, (), doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        doc.problems.append(SourceProblem(line, column, f"invalid YAML: {exc.problem or exc}"))
        doc.data = None
    except yaml.YAMLError as exc:
        doc.problems.append(SourceProblem(1, 1, f"invalid YAML: {exc}"))
        doc.data = None
    finally:
        loader.dispose()
    return doc


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(loader: _Loader, node: yaml.Node, path: DataPath, doc: SourceDocument) -> Any:
    doc.value_marks[path] = _mark(node)
    if node.tag not in _STANDARD_TAGS:
        line, column = _mark(node)
        doc.problems.append(SourceProblem(line, column, f"YAML tag {node.tag!r} is not allowed"))
        return None
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)
        merged = len(node.value) - explicit  # pairs pulled in by "<<" come first
        result: dict[Any, Any] = {}
        written: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = _scalar(loader, key_node, doc)
            if isinstance(key, list | dict) or not isinstance(key, Hashable):
                line, column = _mark(key_node)
                doc.problems.append(
                    SourceProblem(line, column, "a mapping key must be a plain value")
                )
                continue
            key_text = key if isinstance(key, str) else str(key)
            if index >= merged:  # a key the author wrote here; it may override a merged one
                if key_text in written:
                    line, column = _mark(key_node)
                    doc.problems.append(SourceProblem(line, column, f"duplicate key {key_text!r}"))
                    continue
                written.add(key_text)
            doc.key_marks[(*path, key_text)] = _mark(key_node)
            result[key_text] = _build(loader, value_node, (*path, key_text), doc)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), doc) for i, item in enumerate(node.value)]
    return _scalar(loader, node, doc)


def _scalar(loader: _Loader, node: yaml.Node, doc: SourceDocument) -> Any:
    """Construct one node; a value PyYAML cannot build is reported and kept as its text."""
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        line, column = _mark(node)
        doc.problems.append(SourceProblem(line, column, f"invalid value {node.value!r}: {exc}"))
        return node.value if isinstance(node.value, str) else None
