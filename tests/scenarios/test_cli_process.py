"""The installed command, run as a separate process as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

JOURNEY = """
id: welcome
name: Welcome
trigger: {event: Signed Up}
start: pick
steps:
  pick:
    split:
      - weight: 1
        next: hello
      - weight: 1
        next: later
  hello:
    send: {channel: sms, template: t/hi}
    next: end
  later:
    wait: 1h
    next: hello
"""


def _journey_cmd() -> list[str]:
    beside = Path(sys.executable).parent / "journey"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("journey")
    if found:
        return [found]
    pytest.fail("the `journey` console script is not installed")


def _run(cmd: list[str], *, seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def _project(p) -> Path:
    p.template("t/hi.sms.j2", "Hi {{ profile.first_name }}")
    p.journey(JOURNEY)
    events = []
    for i in range(30):
        events.append(
            p.identify(
                f"u{i}",
                {"phone": f"+1555000{i:04d}", "first_name": f"N{i}"},
                "2026-03-01T09:00:00Z",
            )
        )
        events.append(p.track(f"u{i}", "Signed Up", "2026-03-01T10:00:00Z"))
    return p.write_events(events)


def test_console_script_validate(p):
    _project(p)
    ok = _run([*_journey_cmd(), "validate", str(p.journeys)])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (p.journeys / "broken.yaml").write_text(
        "id: broken\nname: B\ntrigger: {event: X}\nstart: nope\nsteps: {}\n"
    )
    bad = _run([*_journey_cmd(), "validate", str(p.journeys)])
    assert bad.returncode == 1
    assert "broken.yaml:" in bad.stdout + bad.stderr


def test_console_script_simulate_prints_json_lines(p):
    events = _project(p)
    res = _run([*_journey_cmd(), "simulate", str(p.journeys), str(events)])
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    assert len([ln for ln in lines if ln["type"] == "entered"]) == 30
    sent = [ln for ln in lines if ln["type"] == "message" and ln["status"] == "sent"]
    assert len(sent) == 30
    assert {ln["at"] for ln in sent} <= {"2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"}
    assert "welcome" in res.stderr


def test_python_dash_m_matches_console_script_and_split_is_stable_across_processes(p):
    events = _project(p)
    a = _run([*_journey_cmd(), "simulate", str(p.journeys), str(events)], seed="1")
    b = _run(
        [sys.executable, "-m", "engine.cli", "simulate", str(p.journeys), str(events)], seed="2"
    )
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    assert a.stdout == b.stdout  # split arms are deterministic, not hash-seed dependent
    times = {json.loads(x)["at"] for x in a.stdout.splitlines() if '"message"' in x}
    assert times == {"2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"}  # both arms used


def test_console_script_schema(p):
    res = _run([*_journey_cmd(), "schema"])
    assert res.returncode == 0, res.stderr
    schema = json.loads(res.stdout)
    assert "steps" in schema["properties"]


def test_console_script_unreadable_events_file(p):
    _project(p)
    res = _run([*_journey_cmd(), "simulate", str(p.journeys), str(p.root / "missing.jsonl")])
    assert res.returncode == 1
    assert res.stdout.strip() == ""
