"""A loaded source document: its data, and where each key and value stood in the file.

The compiler reports every problem as ``file:line:column``, so it works on a
:class:`SourceDocument` rather than on bare data. Reading a file format into one is
the loader's business (``engine.yaml_source`` for journey YAML); this module holds
only the shape both sides agree on, so the compiler depends on no file format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Where a value sits in the data: its keys and list indices from the top.
DataPath = tuple[str | int, ...]


@dataclass
class SourceProblem:
    """A problem found while reading the file itself (syntax, duplicate keys)."""

    line: int
    column: int
    message: str


@dataclass
class SourceDocument:
    """A loaded document: its value plus where each piece of it came from."""

    file: str
    data: Any
    source_text: str = ""
    value_marks: dict[DataPath, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[DataPath, tuple[int, int]] = field(default_factory=dict)
    problems: list[SourceProblem] = field(default_factory=list)

    def position(self, path: DataPath, *, key: bool = False) -> tuple[int, int]:
        """The position of ``path``'s value (or its key, with ``key=True``).

        A path that is not in the file (a missing field) falls back to the key of its
        nearest ancestor, which is where the author has to add it.
        """
        exact = self.key_marks if key else self.value_marks
        if path in exact:
            return exact[path]
        probe = tuple(path[:-1])
        while probe:
            if probe in self.key_marks:
                return self.key_marks[probe]
            probe = probe[:-1]
        return (1, 1)
