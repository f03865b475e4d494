"""Immutable values that are cheap to make: typed named tuples compared like dataclasses.

The runtime makes several small values for every event it applies (inputs, run
states, commands, policy decisions). A frozen dataclass pays a Python-level
``object.__setattr__`` per field to be built; a named tuple is built in one step and
is just as immutable. A bare named tuple, though, equals any tuple with the same
items; :func:`value` gives the class a dataclass's equality instead: equal only to
an instance of the very same class with equal fields.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def value(cls: T) -> T:
    """Make a ``NamedTuple`` class (and its subclasses) compare by class and fields."""

    def __eq__(self: tuple[Any, ...], other: object) -> bool:
        return type(other) is type(self) and tuple.__eq__(self, other)

    def __ne__(self: tuple[Any, ...], other: object) -> bool:
        return not __eq__(self, other)

    setattr(cls, "__eq__", __eq__)  # noqa: B010 - assigning a dunder on a class
    setattr(cls, "__ne__", __ne__)  # noqa: B010
    setattr(cls, "__hash__", tuple.__hash__)  # noqa: B010
    return cls
