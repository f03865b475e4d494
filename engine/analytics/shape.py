"""A compiled journey as steps and edges: what a funnel lists and a dashboard draws.

Steps come in walking order (breadth first from ``start``, each step's targets in the
order the journey names them), so funnels read top to bottom the way a run goes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.graph import (
    END,
    BranchNode,
    CompiledJourney,
    Node,
    SendNode,
    SplitNode,
    WaitForNode,
    WaitNode,
)

KINDS: dict[type, str] = {
    WaitNode: "wait",
    WaitForNode: "wait_for",
    SendNode: "send",
    BranchNode: "branch",
    SplitNode: "split",
}


def duration_text(delta: timedelta) -> str:
    """``1h30m``, ``7d``: the journey format's own way of writing durations."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str  # a step, or "end"
    label: str  # next, event, timeout, case 1..n, else, or an arm's weight ("50%")


@dataclass(frozen=True)
class StepShape:
    name: str
    kind: str
    channels: tuple[str, ...] = ()  # a send's channels, fallbacks after the first
    detail: str = ""  # what the step waits for or sends, in the journey's own terms
    weights: tuple[int, ...] = ()  # a split's arm weights, in the order of its edges

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "channels": list(self.channels),
            "detail": self.detail,
            "weights": list(self.weights),
        }


@dataclass(frozen=True)
class JourneyShape:
    journey_id: str
    name: str
    version: str
    start: str
    steps: tuple[StepShape, ...]
    edges: tuple[Edge, ...]
    trigger: tuple[str, ...]
    goal: tuple[str, ...]  # the goal's event names (empty: no goal)
    goal_within: timedelta | None

    def step(self, name: str) -> StepShape | None:
        return next((step for step in self.steps if step.name == name), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "journey": self.journey_id,
            "name": self.name,
            "version": self.version,
            "start": self.start,
            "trigger": list(self.trigger),
            "goal": {
                "events": list(self.goal),
                "within_seconds": self.goal_within.total_seconds(),
                "within": duration_text(self.goal_within),
            }
            if self.goal_within is not None
            else None,
            "steps": [step.as_json() for step in self.steps],
            "edges": [
                {"from": edge.source, "to": edge.target, "label": edge.label} for edge in self.edges
            ],
        }


def _edges(node: Node) -> list[Edge]:
    name = node.name
    if isinstance(node, WaitNode | SendNode):
        return [Edge(name, node.next, "next")]
    if isinstance(node, WaitForNode):
        return [Edge(name, node.on_event, "event"), Edge(name, node.on_timeout, "timeout")]
    if isinstance(node, BranchNode):
        cases = [Edge(name, target, f"case {i}") for i, (_, target) in enumerate(node.cases, 1)]
        return [*cases, Edge(name, node.otherwise, "else")]
    total = node.total_weight or 1
    return [Edge(name, target, f"{100 * weight / total:g}%") for weight, target in node.arms]


def _detail(node: Node) -> str:
    if isinstance(node, WaitNode):
        if node.delay is not None:
            return duration_text(node.delay)
        return f"until {node.until:%H:%M}" if node.until is not None else ""
    if isinstance(node, WaitForNode):
        names = " | ".join(sorted(node.matcher.names))
        return f"{names} ≤ {duration_text(node.timeout)}"
    if isinstance(node, SendNode):
        content = node.attempts[0].content
        return str(getattr(content, "name", "inline"))
    if isinstance(node, BranchNode):
        return f"{len(node.cases)} case(s) + else"
    return " / ".join(str(weight) for weight, _ in node.arms)


def journey_shape(journey: CompiledJourney) -> JourneyShape:
    """The steps (walking order) and edges of ``journey``."""
    order: list[str] = []
    seen = {journey.start}
    queue = deque([journey.start])
    while queue:
        name = queue.popleft()
        node = journey.nodes.get(name)
        if node is None:
            continue
        order.append(name)
        for edge in _edges(node):
            if edge.target != END and edge.target not in seen:
                seen.add(edge.target)
                queue.append(edge.target)
    order += [name for name in journey.nodes if name not in seen]  # unreachable, still listed
    steps = []
    edges: list[Edge] = []
    for name in order:
        node = journey.nodes[name]
        channels = (
            tuple(attempt.channel.name for attempt in node.attempts)
            if isinstance(node, SendNode)
            else ()
        )
        weights = tuple(w for w, _ in node.arms) if isinstance(node, SplitNode) else ()
        steps.append(StepShape(name, KINDS[type(node)], channels, _detail(node), weights))
        edges += _edges(node)
    goal = journey.goal
    return JourneyShape(
        journey.id,
        journey.name,
        journey.version,
        journey.start,
        tuple(steps),
        tuple(edges),
        tuple(sorted(journey.trigger.names)),
        tuple(sorted(goal.matcher.names)) if goal else (),
        goal.within if goal else None,
    )
