"""The developer tooling: scripts/dev.py and the benchmarks' event-stream generators.

Both live outside the packages (they run before anything is installed, or beside the
engine), so they are loaded from their files.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load(relative: str) -> ModuleType:
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


dev = load("scripts/dev.py")
sys.path.insert(0, str(ROOT / "benchmarks"))  # the generators import one another by name
bench = load("benchmarks/session_stream.py")
send_heavy = load("benchmarks/send_heavy_stream.py")
runner = load("benchmarks/simulate_throughput.py")


def test_dev_resolves_the_repository_from_its_own_path() -> None:
    assert dev.ROOT == ROOT
    assert (dev.ROOT / "pyproject.toml").is_file()


def test_dev_without_a_command_prints_usage_and_fails(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dev.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "dev.py test" in result.stderr


def test_project_hash_follows_pyproject() -> None:
    import hashlib

    expected = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    assert dev.project_hash() == expected


def test_format_trace_shows_a_sent_message_with_its_main_part() -> None:
    line = json.dumps(
        {
            "type": "message",
            "at": "2026-03-01T11:00:00Z",
            "journey": "cart_abandon",
            "step": "nudge",
            "user_id": "u42",
            "channel": "email",
            "to": "u@example.com",
            "status": "sent",
            "reason": None,
            "content": {"subject": "Still\nthinking?", "html": "<p>x</p>", "text": "x"},
        }
    )
    shown = dev.format_trace(line)
    assert shown.startswith("2026-03-01 11:00:00Z")
    for word in ("cart_abandon", "u42", "email", "sent", "Still thinking?"):
        assert word in shown
    assert "<p>" not in shown


def test_format_trace_shows_reason_and_cuts_long_content() -> None:
    line = json.dumps(
        {
            "type": "message",
            "at": "2026-03-01T22:00:00Z",
            "journey": "welcome_series",
            "user_id": "u1",
            "channel": "sms",
            "status": "suppressed",
            "reason": "quiet_hours",
            "content": {"text": "欢迎" * 100},
        }
    )
    shown = dev.format_trace(line)
    assert "suppressed/quiet_hours" in shown
    assert shown.endswith("…")
    assert "欢迎" * 29 in shown and "欢迎" * 31 not in shown


def test_format_trace_handles_other_events_and_non_json() -> None:
    entered = json.dumps(
        {"type": "entered", "at": "2026-03-01T10:00:00Z", "journey": "j", "user_id": "u"}
    )
    assert dev.format_trace(entered).endswith("entered")
    assert dev.format_trace("not json\n") == "not json"
    failed = {"type": "message", "channel": "push", "status": "failed", "content": None}
    assert "failed" in dev.format_trace(json.dumps(failed))


def test_pretty_skips_blank_lines() -> None:
    out = io.StringIO()
    dev.pretty(["\n", '{"type": "completed", "at": "x", "journey": "j", "user_id": "u"}\n'], out)
    assert out.getvalue().count("\n") == 1


@pytest.fixture(scope="module")
def stream() -> list[dict[str, object]]:
    return list(bench.generate(events=3000, users=300, seed=1))


def test_generated_stream_has_the_asked_size_and_unique_ids(
    stream: list[dict[str, object]],
) -> None:
    assert len(stream) == 3000
    assert len({m["messageId"] for m in stream}) == 3000
    assert sum(m["type"] == "identify" for m in stream) == 300


def test_generated_stream_is_in_time_order_with_iso_utc_timestamps(
    stream: list[dict[str, object]],
) -> None:
    stamps = [str(m["timestamp"]) for m in stream]
    assert stamps == sorted(stamps)
    assert all(len(s) == 20 and s.endswith("Z") and s[10] == "T" for s in stamps)


def test_generated_stream_is_a_funnel_with_every_user_identified_first(
    stream: list[dict[str, object]],
) -> None:
    counts = Counter(str(m.get("event", m["type"])) for m in stream)
    assert counts.most_common(1)[0][0] == "Product Viewed"
    for name in ("Product Added", "Checkout Started", "Order Completed", "Signed Up", "page"):
        assert counts[name] > 0, name
    assert counts["Product Added"] > counts["Checkout Started"] > counts["Order Completed"]
    identified: set[object] = set()
    for m in stream:
        if m["type"] == "identify":
            identified.add(m["userId"])
        assert m["userId"] in identified
    orders = [m for m in stream if m.get("event") == "Order Completed"]
    assert all({"order_id", "total", "category"} <= set(m["properties"]) for m in orders)  # type: ignore[arg-type]


def test_generated_stream_is_deterministic_per_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    bench.write_stream(a, 500, 50, seed=3)
    bench.write_stream(b, 500, 50, seed=3)
    bench.write_stream(c, 500, 50, seed=4)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert all(json.loads(line)["messageId"] for line in a.read_text().splitlines())


@pytest.fixture(scope="module")
def sends() -> list[dict[str, object]]:
    return list(send_heavy.generate(events=4000, users=300, seed=1))


def test_send_heavy_stream_is_received_order_not_time_order(
    sends: list[dict[str, object]],
) -> None:
    assert len(sends) == 4000
    assert len({m["messageId"] for m in sends}) == 4000
    stamps = [str(m["timestamp"]) for m in sends]
    assert stamps != sorted(stamps)  # late arrivals: the simulator has to sort
    later = sum(a > b for a, b in itertools.pairwise(stamps))
    assert 0 < later < len(stamps) // 4  # mostly in order, as a collector's log is


def test_send_heavy_stream_mostly_triggers_sends(sends: list[dict[str, object]]) -> None:
    counts = Counter(str(m.get("event", m["type"])) for m in sends)
    senders = {"Order Completed", "Order Shipped", "Order Delivered", "Price Dropped"}
    senders |= {"Points Earned", "Product Added", "Back In Stock"}
    assert sum(counts[name] for name in senders) > len(sends) * 0.6
    assert counts["identify"] >= 300  # every user is known before their first event


def test_send_heavy_journeys_compile_and_use_every_channel() -> None:
    from engine.project import compile_project

    project = compile_project(send_heavy.JOURNEYS)
    channels = {
        attempt.channel.name
        for journey in project.journeys.values()
        for node in journey.nodes.values()
        for attempt in getattr(node, "attempts", ())
    }
    assert channels == {"sms", "email", "wecom", "push"}
    assert project.policies.quiet_hours is not None and project.policies.caps


def test_the_runner_finds_both_streams() -> None:
    assert set(runner.STREAMS) == {"sessions", "send-heavy"}
    assert runner.STREAMS["send-heavy"].journeys == send_heavy.JOURNEYS
