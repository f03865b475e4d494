"""A journey directory, compiled as a whole: journeys, policies and templates.

A directory deploys all or nothing (journey-format section 1): any diagnostic in
any file fails the whole compile, and every diagnostic is reported. The files are
read into a :class:`SourceTree` first, so a deployment stored in the database
compiles exactly like the directory it came from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from engine import spec
from engine.catalog import Project as Project  # re-exported: the result of compiling
from engine.channels import get_channel
from engine.compiler import compile_journey
from engine.content import TemplateChecker
from engine.diagnostics import validation_diagnostics
from engine.errors import CompileError, Diagnostic
from engine.graph import CompiledJourney
from engine.policies import CompiledPolicies
from engine.rendering import TemplateStore
from engine.source import SourceDocument
from engine.yaml_source import load_yaml

POLICIES_FILE = "policies.yaml"
JOURNEY_SUFFIXES = (".yaml", ".yml")
JOURNEYS_PREFIX = "journeys/"
TEMPLATES_PREFIX = "templates/"


@dataclass(frozen=True)
class SourceTree:
    """The text of a journey directory: journey files, the policies file and templates."""

    journeys: Mapping[str, str]  # file name -> text
    policies: str | None
    templates: Mapping[str, str]  # path under templates/ -> text
    journeys_label: str = "journeys"
    templates_label: str = "templates"
    unreadable: tuple[Diagnostic, ...] = ()

    @classmethod
    def from_directory(cls, journeys_dir: Path, templates_dir: Path | None = None) -> SourceTree:
        """Read ``journeys_dir`` and its templates (default: ``templates/`` beside it)."""
        templates_dir = templates_dir or default_templates_dir(journeys_dir)
        journeys: dict[str, str] = {}
        policies: str | None = None
        problems: list[Diagnostic] = []
        for path in sorted(journeys_dir.iterdir()):
            if not path.is_file() or path.suffix not in JOURNEY_SUFFIXES:
                continue
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Diagnostic(str(path), 1, 1, f"cannot read file: {exc}"))
                continue
            if path.name == POLICIES_FILE:
                policies = text
            else:
                journeys[path.name] = text
        store = TemplateStore.from_directory(templates_dir)
        return cls(
            journeys,
            policies,
            dict(store.files),
            str(journeys_dir),
            str(templates_dir),
            tuple(problems),
        )

    def snapshot(self) -> dict[str, str]:
        """Every file as ``{"journeys/x.yaml": text, "templates/a/b.sms.j2": text}``."""
        files = {JOURNEYS_PREFIX + name: text for name, text in self.journeys.items()}
        if self.policies is not None:
            files[JOURNEYS_PREFIX + POLICIES_FILE] = self.policies
        files.update({TEMPLATES_PREFIX + path: text for path, text in self.templates.items()})
        return files

    @classmethod
    def from_snapshot(cls, files: Mapping[str, Any]) -> SourceTree:
        """The inverse of :meth:`snapshot`."""
        journeys = {
            k.removeprefix(JOURNEYS_PREFIX): str(v)
            for k, v in files.items()
            if k.startswith(JOURNEYS_PREFIX) and k != JOURNEYS_PREFIX + POLICIES_FILE
        }
        templates = {
            k.removeprefix(TEMPLATES_PREFIX): str(v)
            for k, v in files.items()
            if k.startswith(TEMPLATES_PREFIX)
        }
        policies = files.get(JOURNEYS_PREFIX + POLICIES_FILE)
        return cls(journeys, str(policies) if policies is not None else None, templates)

    def digest(self) -> str:
        """A hash of every file: equal trees deploy as the same version."""
        digest = hashlib.sha256()
        for path, text in sorted(self.snapshot().items()):
            digest.update(path.encode() + b"\0" + text.encode() + b"\0")
        return digest.hexdigest()[:16]


def default_templates_dir(journeys_dir: Path) -> Path:
    """``templates/`` beside the journey directory."""
    return journeys_dir.resolve().parent / "templates"


def _source_diagnostics(doc: SourceDocument) -> list[Diagnostic]:
    return [Diagnostic(doc.file, p.line, p.column, p.message) for p in doc.problems]


def _lookup(data: object, path: tuple[str | int, ...]) -> object:
    for segment in path:
        if isinstance(data, dict):
            data = data.get(segment)
        elif isinstance(data, list) and isinstance(segment, int) and segment < len(data):
            data = data[segment]
        else:
            return None
    return data


def _compile_policies(
    text: str | None, display: str
) -> tuple[CompiledPolicies | None, list[Diagnostic]]:
    default = CompiledPolicies.from_spec(spec.Policies())
    if text is None:
        return default, []
    doc = load_yaml(text, display)
    diagnostics = _source_diagnostics(doc)
    if doc.data is None and not diagnostics:
        return default, []
    if not isinstance(doc.data, dict):
        if not diagnostics:
            diagnostics.append(Diagnostic(display, 1, 1, "policies.yaml must be a mapping"))
        return None, diagnostics
    unknown: list[tuple[dict[str, object], str, str]] = []
    try:
        model = spec.Policies.model_validate(doc.data, context={spec.UNKNOWN_KEYS_CONTEXT: unknown})
    except ValidationError as exc:
        return None, diagnostics + validation_diagnostics(doc, exc)
    for mapping, key, hint in unknown:
        owner = next((p for p in doc.value_marks if _lookup(doc.data, p) is mapping), ())
        line, column = doc.position((*owner, key), key=True)
        diagnostics.append(Diagnostic(display, line, column, hint))
    channel_refs: list[tuple[tuple[str | int, ...], str]] = []
    if model.quiet_hours and model.quiet_hours.channels:
        channel_refs += [
            (("quiet_hours", "channels", i), c) for i, c in enumerate(model.quiet_hours.channels)
        ]
    channel_refs += [
        (("frequency_caps", i, "channel"), c.channel) for i, c in enumerate(model.frequency_caps)
    ]
    channel_refs += [(("opt_in_channels", i), c) for i, c in enumerate(model.opt_in_channels)]
    for where, name in channel_refs:
        is_any_cap = name == "any" and where[0] == "frequency_caps"
        if not is_any_cap and get_channel(name) is None:
            line, column = doc.position(where)
            diagnostics.append(Diagnostic(display, line, column, f"unknown channel {name!r}"))
    if diagnostics:
        return None, diagnostics
    return CompiledPolicies.from_spec(model), []


def compile_sources(tree: SourceTree) -> Project:
    """Compile a whole source tree; raises CompileError with every diagnostic."""
    store = TemplateStore(tree.templates, tree.templates_label)
    checker = TemplateChecker(store)
    policies, diagnostics = _compile_policies(
        tree.policies, f"{tree.journeys_label}/{POLICIES_FILE}"
    )
    diagnostics += tree.unreadable
    compiled: dict[str, CompiledJourney] = {}
    first_file: dict[str, str] = {}
    for name, text in sorted(tree.journeys.items()):
        display = f"{tree.journeys_label}/{name}"
        doc = load_yaml(text, display)
        diagnostics += _source_diagnostics(doc)
        if doc.data is None:
            continue  # not YAML: nothing more to check
        journey, problems = compile_journey(doc, checker)
        diagnostics += problems
        journey_id = doc.data.get("id") if isinstance(doc.data, dict) else None
        if isinstance(journey_id, str):
            if journey_id in first_file:
                line, column = doc.position(("id",))
                diagnostics.append(
                    Diagnostic(
                        display,
                        line,
                        column,
                        f"duplicate journey id {journey_id!r} (also in {first_file[journey_id]})",
                    )
                )
                continue
            first_file[journey_id] = display
        if journey is not None:
            compiled[journey.id] = journey
    diagnostics += checker.diagnostics
    if diagnostics or policies is None:
        raise CompileError(sorted(set(diagnostics)))
    by_event: dict[str, list[CompiledJourney]] = {}
    for journey_id in sorted(compiled):
        for event_name in compiled[journey_id].listens_to:
            by_event.setdefault(event_name, []).append(compiled[journey_id])
    return Project(
        journeys=MappingProxyType(compiled),
        policies=policies,
        templates=store,
        by_event=MappingProxyType({k: tuple(v) for k, v in by_event.items()}),
        version=tree.digest(),
    )


def compile_project(journeys_dir: Path, templates_dir: Path | None = None) -> Project:
    """Compile a journey directory from disk; raises CompileError with every diagnostic."""
    journeys_dir = Path(journeys_dir)
    if not journeys_dir.is_dir():
        raise CompileError([Diagnostic(str(journeys_dir), 1, 1, "not a directory")])
    return compile_sources(SourceTree.from_directory(journeys_dir, templates_dir))
