"""A journey directory, compiled as a whole: journeys, policies and templates.

A directory deploys all or nothing (journey-format section 1): any diagnostic in
any file fails the whole compile, and every diagnostic is reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pydantic import ValidationError

from engine import spec
from engine.channels import get_channel
from engine.compiler import TemplateChecker, compile_journey, journey_files
from engine.diagnostics import validation_diagnostics
from engine.errors import CompileError, Diagnostic
from engine.graph import CompiledJourney
from engine.policies import CompiledPolicies
from engine.rendering import TemplateStore
from engine.yaml_source import SourceProblem, YamlDocument, load_yaml

POLICIES_FILE = "policies.yaml"


@dataclass(frozen=True)
class Project:
    """Everything the runtime needs from a journey directory."""

    journeys: Mapping[str, CompiledJourney]
    policies: CompiledPolicies
    templates: TemplateStore
    by_event: Mapping[str, tuple[CompiledJourney, ...]] = field(default_factory=dict)
    version: str = ""

    @property
    def ordered(self) -> tuple[CompiledJourney, ...]:
        """Journeys in ``id`` order, the order triggers are tried in."""
        return tuple(self.journeys[k] for k in sorted(self.journeys))


def default_templates_dir(journeys_dir: Path) -> Path:
    """``templates/`` beside the journey directory."""
    return journeys_dir.resolve().parent / "templates"


def _read(path: Path, display: str) -> YamlDocument:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        doc = YamlDocument(file=display, data=None)
        doc.problems.append(SourceProblem(1, 1, f"cannot read file: {exc}"))
        return doc
    return load_yaml(text, display)


def _source_diagnostics(doc: YamlDocument) -> list[Diagnostic]:
    return [Diagnostic(doc.file, p.line, p.column, p.message) for p in doc.problems]


def _compile_policies(path: Path, display: str) -> tuple[CompiledPolicies | None, list[Diagnostic]]:
    default = CompiledPolicies.from_spec(spec.Policies())
    if not path.exists():
        return default, []
    doc = _read(path, display)
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
        path_to = next(
            (p for p in doc.value_marks if p and _lookup(doc.data, p) is mapping),
            (),
        )
        line, column = doc.position((*path_to, key), key=True)
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


def _lookup(data: object, path: tuple[str | int, ...]) -> object:
    for segment in path:
        if isinstance(data, dict):
            data = data.get(segment)
        elif isinstance(data, list) and isinstance(segment, int) and segment < len(data):
            data = data[segment]
        else:
            return None
    return data


def compile_project(journeys_dir: Path, templates_dir: Path | None = None) -> Project:
    """Compile a whole journey directory; raises CompileError with every diagnostic."""
    journeys_dir = Path(journeys_dir)
    if not journeys_dir.is_dir():
        raise CompileError([Diagnostic(str(journeys_dir), 1, 1, "not a directory")])
    store = TemplateStore(
        Path(templates_dir) if templates_dir else default_templates_dir(journeys_dir)
    )
    checker = TemplateChecker(store)
    policies, diagnostics = _compile_policies(
        journeys_dir / POLICIES_FILE, str(journeys_dir / POLICIES_FILE)
    )
    compiled: dict[str, CompiledJourney] = {}
    first_file: dict[str, str] = {}
    digest = hashlib.sha256()
    for path in journey_files(journeys_dir):
        doc = _read(path, str(path))
        digest.update(doc.source_text.encode())
        diagnostics += _source_diagnostics(doc)
        if doc.data is None:
            continue  # unreadable or not YAML: nothing more to check
        journey, problems = compile_journey(doc, checker)
        diagnostics += problems
        journey_id = doc.data.get("id") if isinstance(doc.data, dict) else None
        if isinstance(journey_id, str):
            if journey_id in first_file:
                line, column = doc.position(("id",))
                diagnostics.append(
                    Diagnostic(
                        str(path),
                        line,
                        column,
                        f"duplicate journey id {journey_id!r} (also in {first_file[journey_id]})",
                    )
                )
                continue
            first_file[journey_id] = str(path)
        if journey is not None:
            compiled[journey.id] = journey
    diagnostics += checker.diagnostics
    if diagnostics or policies is None:
        raise CompileError(sorted(set(diagnostics)))
    by_event: dict[str, list[CompiledJourney]] = {}
    for journey_id in sorted(compiled):
        for name in compiled[journey_id].listens_to:
            by_event.setdefault(name, []).append(compiled[journey_id])
    for journey in compiled.values():
        digest.update(journey.version.encode())
    return Project(
        journeys=MappingProxyType(compiled),
        policies=policies,
        templates=store,
        by_event=MappingProxyType({k: tuple(v) for k, v in by_event.items()}),
        version=digest.hexdigest()[:16],
    )
