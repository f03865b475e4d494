"""Black-box scenario kit: build a throw-away project and drive the `journey` CLI.

Every scenario goes through `engine.cli.main(argv)` exactly as a user would run
`journey validate DIR` / `journey simulate DIR EVENTS.jsonl`; nothing here
imports engine internals.  The spec under test is
/work/shared/spec/journey-format.md.
"""

from __future__ import annotations

import itertools
import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

LOCATION_RE = re.compile(r"\.yaml:\d+:\d+: ")


@dataclass
class Result:
    code: int
    out: str
    err: str
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def both(self) -> str:
        """stdout + stderr: validate errors may go to either."""
        return self.out + "\n" + self.err

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """Trace lines of one `type`, optionally filtered by exact field values."""
        return [
            ln
            for ln in self.lines
            if ln.get("type") == kind and all(ln.get(k) == v for k, v in match.items())
        ]

    def messages(self, **match: Any) -> list[dict[str, Any]]:
        return self.of("message", **match)

    def kinds(self) -> list[tuple[str, str]]:
        """(type, at) pairs in output order: handy for asserting a whole trace."""
        return [(ln["type"], ln["at"]) for ln in self.lines]


def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from engine.cli import main

    capsys.readouterr()  # drop anything printed before
    try:
        code = main(argv)
    except SystemExit as exc:  # a click/typer app may exit instead of returning
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return (0 if code is None else int(code)), captured.out, captured.err


def _parse_lines(out: str) -> list[dict[str, Any]]:
    lines = []
    for raw in out.splitlines():
        if raw.strip():
            lines.append(json.loads(raw))  # every stdout line must be one JSON object
    return lines


class Project:
    """A temp project: journeys/ (+ policies.yaml), templates/, events.jsonl."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.capsys = capsys
        self.journeys = root / "journeys"
        self.templates = root / "templates"
        self.journeys.mkdir()
        self.templates.mkdir()
        self._ids = itertools.count(1)

    # -- files -----------------------------------------------------------------
    def journey(self, text: str, filename: str | None = None) -> Path:
        body = textwrap.dedent(text).strip("\n") + "\n"
        if filename is None:
            m = re.search(r"^id:\s*(\S+)", body, re.M)
            filename = (m.group(1) if m else "journey") + ".yaml"
        path = self.journeys / filename
        path.write_text(body, encoding="utf-8")
        return path

    def policies(self, text: str) -> Path:
        return self.journey(text, filename="policies.yaml")

    def template(self, rel: str, text: str, base: Path | None = None) -> Path:
        """Write a template file WITHOUT a trailing newline."""
        path = (base or self.templates) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).strip("\n"), encoding="utf-8")
        return path

    # -- events ----------------------------------------------------------------
    def _mid(self) -> str:
        return f"m-{next(self._ids)}"

    @staticmethod
    def _ids_of(user: str | None, anon: str | None) -> dict[str, str]:
        ids = {}
        if user is not None:
            ids["userId"] = user
        if anon is not None:
            ids["anonymousId"] = anon
        return ids

    def track(
        self,
        user: str | None,
        event: str,
        at: str,
        props: dict[str, Any] | None = None,
        *,
        anon: str | None = None,
        mid: str | None = None,
    ) -> dict[str, Any]:
        return {
            "type": "track",
            "event": event,
            **self._ids_of(user, anon),
            "properties": props or {},
            "timestamp": at,
            "messageId": mid or self._mid(),
        }

    def identify(
        self,
        user: str | None,
        traits: dict[str, Any],
        at: str,
        *,
        anon: str | None = None,
        mid: str | None = None,
    ) -> dict[str, Any]:
        return {
            "type": "identify",
            **self._ids_of(user, anon),
            "traits": traits,
            "timestamp": at,
            "messageId": mid or self._mid(),
        }

    def other(self, kind: str, user: str, at: str, **fields: Any) -> dict[str, Any]:
        """page / screen / group / alias messages."""
        return {"type": kind, "userId": user, "timestamp": at, "messageId": self._mid(), **fields}

    def write_events(self, events: list[dict[str, Any] | str], name: str = "events.jsonl") -> Path:
        path = self.root / name
        rows = [e if isinstance(e, str) else json.dumps(e, ensure_ascii=False) for e in events]
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        return path

    # -- CLI -------------------------------------------------------------------
    def run(self, argv: list[str]) -> Result:
        code, out, err = _run_main(argv, self.capsys)
        return Result(code, out, err)

    def simulate(
        self,
        events: list[dict[str, Any] | str] | Path,
        *,
        until: str | None = None,
        templates: Path | None = None,
    ) -> Result:
        path = events if isinstance(events, Path) else self.write_events(events)
        argv = ["simulate", str(self.journeys), str(path)]
        if until is not None:
            argv += ["--until", until]
        if templates is not None:
            argv += ["--templates", str(templates)]
        code, out, err = _run_main(argv, self.capsys)
        return Result(code, out, err, _parse_lines(out))

    def validate(self) -> Result:
        return self.run(["validate", str(self.journeys)])


@pytest.fixture
def p(tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> Project:
    # The directory name must not contain the test's name: keyword assertions on
    # error output would otherwise match the path.
    return Project(tmp_path_factory.mktemp("proj"), capsys)


def assert_compile_error(res: Result, filename: str, *keywords: str) -> None:
    """Compile errors: exit 1, `file:line:column: message`, naming the problem."""
    assert res.code == 1, res.both
    assert filename in res.both, res.both
    assert re.search(re.escape(filename) + r":\d+:\d+: ", res.both), res.both
    for kw in keywords:
        # as a whole word: "end" must not be satisfied by "send"
        word = r"(?<![A-Za-z0-9_])" + re.escape(kw) + r"(?![A-Za-z0-9_])"
        assert re.search(word, res.both), f"{kw!r} not in:\n{res.both}"


@pytest.fixture
def compile_error():
    return assert_compile_error
