"""Long commands draw a progress bar on a terminal, and stay quiet when redirected."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]


def events_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "events.jsonl"
    lines = [
        orjson.dumps({"type": "track", "userId": f"u{i % 500}", "event": "Signed Up",
                      "messageId": f"m{i}", "timestamp": f"2026-03-01T00:{i // 6000 % 60:02d}:00Z"})
        for i in range(count)
    ]  # fmt: skip
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def simulate(events: Path, stderr: int | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "simulate", "journeys", str(events)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.PIPE,
        env=dict(os.environ, COLUMNS="100", TERM="xterm"),
    )


def test_simulate_draws_a_bar_on_a_terminal_only(tmp_path: Path) -> None:
    events = events_file(tmp_path, 30_000)
    main, secondary = pty.openpty()
    child = simulate(events, secondary)
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    child.wait(30)
    os.close(main)
    text = seen.decode(errors="replace")
    assert "simulating" in text and "/30000" in text  # the bar, with its total
    assert "simulated 30000 event(s)" in text

    quiet = simulate(events, None)
    _, err = quiet.communicate(timeout=120)
    assert b"simulating" not in err and b"\x1b[" not in err  # no bar, no escape codes
    assert b"simulated 30000 event(s)" in err
