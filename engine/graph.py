"""The compiled, immutable form of a journey: what the runtime walks.

Compilation (``engine.compiler``) turns the YAML models into these nodes with
conditions compiled and targets checked, so the runtime never re-parses anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

from engine.channels import ChannelSpec
from engine.rendering import MessageParts, TemplateStore

END = "end"
Condition = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class EventMatcher:
    """Matches events by name, then by an optional condition."""

    names: frozenset[str]
    where: Condition | None = None

    def wants(self, name: str | None) -> bool:
        """Cheap first test: is this event name one of ours?"""
        return name in self.names

    def matches(self, name: str | None, scope: Callable[[], Mapping[str, Any]]) -> bool:
        """Full test; ``scope`` is built only when the name matches and a condition exists."""
        if name not in self.names:
            return False
        return self.where is None or self.where(scope())


@dataclass(frozen=True, slots=True)
class WaitNode:
    name: str
    next: str
    delay: timedelta | None = None
    until: time | None = None


@dataclass(frozen=True, slots=True)
class WaitForNode:
    name: str
    matcher: EventMatcher
    timeout: timedelta
    on_event: str
    on_timeout: str


@dataclass(frozen=True, slots=True)
class TemplateContent:
    """Content from template files, resolved per locale when rendered."""

    name: str
    store: TemplateStore


@dataclass(frozen=True, slots=True)
class InlineContent:
    """Content written in the journey file itself."""

    parts: MessageParts


Content = TemplateContent | InlineContent


@dataclass(frozen=True, slots=True)
class ChannelAttempt:
    """One channel to try, with what to render for it.

    The channel is resolved when the journey compiles, so a compiled journey does not
    depend on what is registered later.
    """

    channel: ChannelSpec
    content: Content


@dataclass(frozen=True, slots=True)
class SendNode:
    name: str
    attempts: tuple[ChannelAttempt, ...]
    next: str
    ignore_frequency_cap: bool = False


@dataclass(frozen=True, slots=True)
class BranchNode:
    name: str
    cases: tuple[tuple[Condition, str], ...]
    otherwise: str


@dataclass(frozen=True, slots=True)
class SplitNode:
    name: str
    arms: tuple[tuple[int, str], ...]

    @property
    def total_weight(self) -> int:
        return sum(weight for weight, _ in self.arms)


Node = WaitNode | WaitForNode | SendNode | BranchNode | SplitNode


@dataclass(frozen=True, slots=True)
class Goal:
    matcher: EventMatcher
    within: timedelta


@dataclass(frozen=True, slots=True)
class ReEntry:
    """``never``, ``always`` or ``after`` a delay counted from the previous entry."""

    mode: str
    after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class CompiledJourney:
    id: str
    name: str
    version: str
    source: str
    trigger: EventMatcher
    re_entry: ReEntry
    exits: tuple[EventMatcher, ...]
    goal: Goal | None
    start: str
    nodes: Mapping[str, Node]
    #: Every event name the journey reacts to (trigger, exits, goal, wait_for), for indexing.
    listens_to: frozenset[str] = frozenset()
    #: The event names that can change a run once it exists (exits, goal, wait_for).
    moved_by: frozenset[str] = frozenset()


def moving_names(journey: CompiledJourney) -> frozenset[str]:
    """Every event name that can change a run of ``journey``."""
    names: set[str] = set()
    for matcher in journey.exits:
        names |= matcher.names
    if journey.goal:
        names |= journey.goal.matcher.names
    for node in journey.nodes.values():
        if isinstance(node, WaitForNode):
            names |= node.matcher.names
    return frozenset(names)


def listened_names(journey: CompiledJourney) -> frozenset[str]:
    """Every event name ``journey`` reacts to."""
    return journey.trigger.names | moving_names(journey)
