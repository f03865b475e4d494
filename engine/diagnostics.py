"""Turn pydantic validation errors into ``file:line:column: message`` diagnostics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from engine.errors import Diagnostic
from engine.source import DataPath, SourceDocument
from engine.spec import UNION_TAGS


def data_path(data: Any, loc: tuple[str | int, ...]) -> DataPath:
    """Follow a pydantic ``loc`` through the loaded data, dropping validator and union names.

    The result is a path of real keys and indices, possibly ending in one key that
    the data lacks (a missing field).
    """
    path: list[str | int] = []
    current = data
    for segment in loc:
        present = (isinstance(current, dict) and segment in current) or (
            isinstance(current, list) and isinstance(segment, int) and 0 <= segment < len(current)
        )
        if present:
            path.append(segment)
            current = cast(Any, current)[segment]
        elif segment in UNION_TAGS or (isinstance(segment, str) and "[" in segment):
            continue
        else:
            path.append(segment)
            break
    return tuple(path)


def dotted(path: DataPath) -> str:
    """``("steps", "nudge", "branch", 0, "when")`` -> ``steps.nudge.branch[0].when``."""
    text = ""
    for segment in path:
        text += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if text else segment)
    return text


def _message(error: Any, path: DataPath, present: bool) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    if kind == "missing":
        return f"missing required key {path[-1]!r}" if path else "missing required key"
    if kind == "step_kind":
        return msg
    if kind == "string_pattern_mismatch" and path and path[-1] == "id":
        return "must match [a-z][a-z0-9_]* (lowercase letters, digits, underscores)"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if present and "input" in error and kind.endswith("_type"):
        msg = f"{msg}, got {error['input']!r}"
    return msg


def validation_diagnostics(
    doc: SourceDocument,
    errors: ValidationError | Sequence[ErrorDetails],
    prefix: DataPath = (),
) -> list[Diagnostic]:
    """One diagnostic per distinct error, located in ``doc``; ``prefix`` roots the locs."""
    if isinstance(errors, ValidationError):
        errors = errors.errors()
    seen: set[tuple[DataPath, str]] = set()
    diagnostics = []
    for error in errors:
        path = data_path(doc.data, (*prefix, *error["loc"]))
        present = path in doc.value_marks
        message = _message(error, path, present)
        if (path, message) in seen:
            continue
        seen.add((path, message))
        line, column = doc.position(path)
        where = dotted(path)
        diagnostics.append(
            Diagnostic(doc.file, line, column, f"{where}: {message}" if where else message)
        )
    return diagnostics
