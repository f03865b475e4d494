"""Compile one journey file into a :class:`~engine.graph.CompiledJourney`, or say why not.

Every problem is collected as a diagnostic (``file:line:column: message``):
schema errors per step, unknown keys with a hint, missing or unknown targets,
unreachable steps, cycles that take no time, unknown channels, missing or broken
templates (fallback channels included) and bad inline content.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from pydantic import TypeAdapter, ValidationError

from engine import spec
from engine.content import SendCompiler, TemplateChecker
from engine.diagnostics import validation_diagnostics
from engine.errors import Diagnostic
from engine.expressions import compile_condition
from engine.graph import (
    END,
    BranchNode,
    CompiledJourney,
    EventMatcher,
    Goal,
    Node,
    ReEntry,
    SendNode,
    SplitNode,
    WaitForNode,
    WaitNode,
    listened_names,
    moving_names,
)
from engine.source import DataPath, SourceDocument

_STEP_ADAPTER: TypeAdapter[Any] = TypeAdapter(spec.Step)
_STEP_NAME = re.compile(spec.NAME_PATTERN)


class _JourneyCompiler:
    def __init__(self, doc: SourceDocument, templates: TemplateChecker) -> None:
        self.sends = SendCompiler(templates, self.error, doc.file)
        self.doc = doc
        self.templates = templates
        self.diagnostics: list[Diagnostic] = []

    def error(self, path: DataPath, message: str, *, key: bool = False) -> None:
        line, column = self.doc.position(path, key=key)
        self.diagnostics.append(Diagnostic(self.doc.file, line, column, message))

    # -- schema -------------------------------------------------------------

    def validate(self) -> tuple[spec.Journey | None, set[str], dict[str, Any], bool]:
        """Schema-validate the document step by step.

        Returns the journey model (None if its header is broken), every step name,
        the steps that validated, and whether all of them did.
        """
        data = self.doc.data
        if not isinstance(data, dict):
            self.error(
                (), "a journey file must be a mapping with id, name, trigger, start and steps"
            )
            return None, set(), {}, False
        unknown: list[tuple[dict[str, Any], str, str]] = []
        context = {spec.UNKNOWN_KEYS_CONTEXT: unknown}
        raw_steps = data.get("steps")
        step_names: set[str] = set()
        valid_steps: dict[str, Any] = {}
        broken: list[tuple[str, Any]] = []
        steps_ok = True
        if isinstance(raw_steps, dict):
            for name, body in raw_steps.items():
                step_names.add(name)
                try:
                    valid_steps[name] = _STEP_ADAPTER.validate_python(body, context=context)
                except ValidationError as exc:
                    steps_ok = False
                    self.diagnostics += validation_diagnostics(self.doc, exc, ("steps", name))
                    broken.append((name, body))
        header = dict(data)
        if isinstance(raw_steps, dict):
            header["steps"] = valid_steps
        model: spec.Journey | None = None
        try:
            model = spec.Journey.model_validate(header, context=context)
        except ValidationError as exc:
            # With broken steps, "steps should have at least 1 item" only repeats them.
            errors = [e for e in exc.errors() if steps_ok or e["loc"] != ("steps",)]
            self.diagnostics += validation_diagnostics(self.doc, errors)
        self._report_unknown_keys(unknown)
        for name, body in broken:  # a broken step's targets can still be checked
            for path, target in _raw_targets(("steps", name), body):
                self._check_target(path, target, step_names)
        return model, step_names, valid_steps, steps_ok

    def _report_unknown_keys(self, unknown: list[tuple[dict[str, Any], str, str]]) -> None:
        paths: dict[int, DataPath] = {}

        def index(value: Any, path: DataPath) -> None:
            if isinstance(value, dict):
                paths[id(value)] = path
                for k, v in value.items():
                    index(v, (*path, k))
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    index(v, (*path, i))

        index(self.doc.data, ())
        reported: set[tuple[DataPath, str]] = set()
        for mapping, key, hint in unknown:
            path = paths.get(id(mapping), ())
            if (path, key) not in reported:
                reported.add((path, key))
                self.error((*path, key), hint, key=True)

    # -- graph ----------------------------------------------------------------

    def compile(self) -> CompiledJourney | None:
        model, step_names, steps, steps_ok = self.validate()
        for name in step_names:
            if name == END:
                self.error(
                    ("steps", name),
                    "'end' is reserved (it completes the run); rename the step",
                    key=True,
                )
            elif not isinstance(name, str) or not _STEP_NAME.match(name):
                self.error(
                    ("steps", name), f"step name {name!r} must match [a-z][a-z0-9_]*", key=True
                )
        nodes: dict[str, Node] = {}
        for name, step in steps.items():
            node = self._node(name, step, step_names)
            if node is not None:
                nodes[name] = node
        edges = {name: _step_targets(step) for name, step in steps.items()}
        self._check_timeless_cycles(
            edges, {n for n, step in steps.items() if not _takes_time(step)}
        )
        if model is None:
            return None
        self._check_target(("start",), model.start, step_names)
        if steps_ok and model.start in steps:
            self._check_reachable(model.start, edges)
        if self.diagnostics:
            return None
        journey = CompiledJourney(
            id=model.id,
            name=model.name,
            version=self._version(),
            source=self.doc.file,
            trigger=_matcher(model.trigger.event, model.trigger.where),
            re_entry=_re_entry(model.entry),
            exits=tuple(_matcher(rule.event, rule.where) for rule in model.exit_when),
            goal=Goal(_matcher(model.goal.event, model.goal.where), model.goal.within)
            if model.goal
            else None,
            start=model.start,
            nodes=MappingProxyType(nodes),
        )
        return replace(journey, listens_to=listened_names(journey), moved_by=moving_names(journey))

    def _version(self) -> str:
        digest = hashlib.sha256(self.doc.source_text.encode())
        for key in sorted(self.sends.template_keys):
            digest.update(self.templates.digests.get(key, "").encode())
        return digest.hexdigest()[:16]

    def _check_target(self, path: DataPath, target: str, names: set[str]) -> bool:
        if target == END or target in names:
            return True
        close = difflib.get_close_matches(target, sorted(names), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.error(path, f"unknown step {target!r}{hint}; targets are step names or 'end'")
        return False

    def _node(self, name: str, step: Any, names: set[str]) -> Node | None:
        at: DataPath = ("steps", name)
        if isinstance(step, spec.WaitStep):
            self._check_target((*at, "next"), step.next, names)
            if isinstance(step.wait, spec.WaitUntil):
                return WaitNode(name, step.next, until=step.wait.until)
            return WaitNode(name, step.next, delay=step.wait)
        if isinstance(step, spec.WaitForStep):
            self._check_target((*at, "on_event"), step.on_event, names)
            self._check_target((*at, "on_timeout"), step.on_timeout, names)
            matcher = _matcher(step.wait_for.event, step.wait_for.where)
            return WaitForNode(name, matcher, step.wait_for.timeout, step.on_event, step.on_timeout)
        if isinstance(step, spec.SendStep):
            self._check_target((*at, "next"), step.next, names)
            attempts = self.sends.attempts(at, step.send)
            if attempts is None:
                return None
            return SendNode(name, attempts, step.next, step.send.ignore_frequency_cap)
        if isinstance(step, spec.BranchStep):
            return self._branch(at, name, step, names)
        assert isinstance(step, spec.SplitStep)
        for i, arm in enumerate(step.split):
            self._check_target((*at, "split", i, "next"), arm.next, names)
        return SplitNode(name, tuple((arm.weight, arm.next) for arm in step.split))

    def _branch(
        self, at: DataPath, name: str, step: spec.BranchStep, names: set[str]
    ) -> Node | None:
        cases: list[tuple[Any, str]] = []
        otherwise: str | None = None
        for i, item in enumerate(step.branch):
            if isinstance(item, spec.BranchElse):
                self._check_target((*at, "branch", i, "else"), item.else_, names)
                if i != len(step.branch) - 1:
                    self.error((*at, "branch", i), "'else' must be the last item of a branch")
                otherwise = item.else_
            else:
                self._check_target((*at, "branch", i, "next"), item.next, names)
                cases.append((compile_condition(item.when), item.next))
        if otherwise is None:
            self.error((*at, "branch"), f"branch {name!r} needs a final {{else: STEP}}")
            return None
        return BranchNode(name, tuple(cases), otherwise)

    def _check_reachable(self, start: str, edges: Mapping[str, tuple[str, ...]]) -> None:
        seen = {start}
        todo = [start]
        while todo:
            for target in edges[todo.pop()]:
                if target in edges and target not in seen:
                    seen.add(target)
                    todo.append(target)
        for name in edges:
            if name not in seen:
                self.error(
                    ("steps", name), f"step {name!r} is unreachable from start {start!r}", key=True
                )

    def _check_timeless_cycles(
        self, edges: Mapping[str, tuple[str, ...]], timeless: set[str]
    ) -> None:
        """Report each cycle made only of steps that take no time (send, branch, split)."""
        state: dict[str, int] = {}
        reported: set[frozenset[str]] = set()

        def visit(name: str, trail: list[str]) -> None:
            state[name] = 1
            trail.append(name)
            for target in edges[name]:
                if target not in timeless:
                    continue
                if state.get(target) == 1:
                    cycle = trail[trail.index(target) :]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        loop = " -> ".join([*cycle, target])
                        self.error(
                            ("steps", target),
                            f"cycle takes no time ({loop}); put a wait or wait_for in it",
                            key=True,
                        )
                elif target not in state:
                    visit(target, trail)
            trail.pop()
            state[name] = 2

        for name in sorted(timeless):
            if name not in state:
                visit(name, [])


def _step_targets(step: Any) -> tuple[str, ...]:
    """Where a validated step may go next."""
    if isinstance(step, spec.WaitStep | spec.SendStep):
        return (step.next,)
    if isinstance(step, spec.WaitForStep):
        return (step.on_event, step.on_timeout)
    if isinstance(step, spec.BranchStep):
        return tuple(
            item.else_ if isinstance(item, spec.BranchElse) else item.next for item in step.branch
        )
    return tuple(arm.next for arm in step.split)


def _raw_targets(at: DataPath, body: Any) -> list[tuple[DataPath, str]]:
    """The string targets of a step that failed validation, found in its raw mapping."""
    found: list[tuple[DataPath, str]] = []
    if not isinstance(body, dict):
        return found
    for key in ("next", "on_event", "on_timeout"):
        if isinstance(body.get(key), str):
            found.append(((*at, key), body[key]))
    for kind, keys in (("branch", ("next", "else")), ("split", ("next",))):
        items = body.get(kind)
        for i, item in enumerate(items if isinstance(items, list) else []):
            for key in keys:
                if isinstance(item, dict) and isinstance(item.get(key), str):
                    found.append(((*at, kind, i, key), item[key]))
    return found


def _takes_time(step: Any) -> bool:
    """Whether passing through a step always lets time pass (for the cycle check)."""
    return isinstance(step, spec.WaitStep | spec.WaitForStep)


def _matcher(names: tuple[str, ...], where: str | None) -> EventMatcher:
    return EventMatcher(frozenset(names), compile_condition(where) if where else None)


def _re_entry(entry: spec.Entry) -> ReEntry:
    if entry.re_entry.startswith("after"):
        return ReEntry("after", entry.re_entry_after)
    return ReEntry(entry.re_entry)


def compile_journey(
    doc: SourceDocument, templates: TemplateChecker
) -> tuple[CompiledJourney | None, list[Diagnostic]]:
    """Compile one loaded journey document; returns the journey or its diagnostics."""
    compiler = _JourneyCompiler(doc, templates)
    journey = compiler.compile()
    return journey, compiler.diagnostics
