"""`journey simulate` split among worker processes writes the very trace one process writes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.simulation_workers as simulation_workers
from engine.catalog import Project
from engine.event_files import EventFile
from engine.events import parse_message
from engine.project import compile_project
from engine.simulate import Simulation
from engine.simulation_workers import Outcome, WorkerSimulation
from engine.user_shards import UserShards

ROOT = Path(__file__).resolve().parents[2]
PROJECT = compile_project(ROOT / "journeys")
SEND_HEAVY = compile_project(ROOT / "benchmarks" / "send_heavy" / "journeys")
START = datetime(2026, 3, 1, tzinfo=UTC)
NAMES = ["Signed Up", "Product Added", "Checkout Started", "Order Completed", "Product Viewed"]


def simulate_in_workers(
    project: Project,
    file: EventFile,
    workers: int,
    horizon_after: Callable[[datetime | None], datetime | None],
    write: Callable[[bytes], None],
    advance: Callable[[float], None],
) -> Outcome:
    """What ``journey simulate`` does with workers, short of the command line."""
    simulation = WorkerSimulation(file, workers)
    simulation.start(project, horizon_after)
    return simulation.merge(write, advance)


def horizon_after(last: datetime | None) -> datetime | None:
    return last + timedelta(days=30) if last is not None else None


def in_one_process(project: Project, path: Path) -> tuple[bytes, Any]:
    lines: list[bytes] = []
    simulation = Simulation(project, lambda line: lines.append(orjson.dumps(line) + b"\n"))
    file = EventFile(path)
    simulation.run(iter(file))
    horizon = horizon_after(file.last)
    if horizon is not None:
        simulation.fire_due(horizon)
    counts = {k: dict(v) for k, v in simulation.summary.counts.items() if v}
    ending = (len(simulation.users), counts, file.count, file.duplicates, file.errors, file.last)
    return b"".join(lines), ending


def in_workers(project: Project, path: Path, workers: int) -> tuple[bytes, Any]:
    chunks: list[bytes] = []
    file = EventFile(path)
    outcome = simulate_in_workers(
        project, file, workers, horizon_after, chunks.append, lambda amount: None
    )
    counts = {k: dict(v) for k, v in outcome.summary.counts.items() if v}
    ending = (outcome.users, counts, file.count, file.duplicates, file.errors, file.last)
    return b"".join(chunks), ending


def write(path: Path, messages: list[dict[str, Any] | str]) -> Path:
    path.write_bytes(
        b"\n".join(m.encode() if isinstance(m, str) else orjson.dumps(m) for m in messages) + b"\n"
    )
    return path


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def profile(user: str, rng: random.Random) -> dict[str, Any]:
    traits: dict[str, Any] = {
        "locale": rng.choice(["zh-CN", "en"]),
        "subscriptions": {"sms": rng.random() < 0.8, "email": True},
        "vip": rng.random() < 0.3,
        "timezone": rng.choice(["Asia/Shanghai", "Europe/Berlin", "America/New_York"]),
    }
    if rng.random() < 0.8:
        traits["phone"] = "+8613800000000"
    if rng.random() < 0.8:
        traits["email"] = f"{user}@example.com"
    if rng.random() < 0.5:
        traits["push_token"] = "tok"
    return traits


def busy_stream(seed: int, users: int = 60, events: int = 1500) -> list[dict[str, Any] | str]:
    """Many users with equal timestamps (so timers come due together across users),
    anonymous visitors identified and aliased later, bad lines and duplicates, shuffled."""
    rng = random.Random(seed)
    names = [f"u{i}" for i in range(users)]
    lines: list[dict[str, Any] | str] = []
    for n, user in enumerate(names):
        lines.append(
            {
                "type": "identify",
                "userId": user,
                "traits": profile(user, rng),
                "timestamp": at(rng.choice([0, 0, 5])),
                "messageId": f"id-{n}",
            }
        )
    for n in range(events):
        if n % 2:  # on a grid, where timers come due at the very times of events
            minute = rng.choice([0, 30, 60, 600, 1440]) + rng.randrange(0, 3) * 60 * 24
        else:  # anywhere: timers come due between events
            minute = rng.uniform(0, 4 * 60 * 24)
        who = rng.random()
        if who < 0.2:
            ids: dict[str, Any] = {"anonymousId": f"v{rng.randrange(users // 2)}"}
        elif who < 0.3:
            ids = {"userId": rng.choice(names), "anonymousId": f"v{rng.randrange(users // 2)}"}
        else:
            ids = {"userId": rng.choice(names)}
        lines.append(
            {
                "type": "track",
                "event": rng.choice(NAMES),
                **ids,
                "properties": {
                    "category": rng.choice(["electronics", "beauty", "books"]),
                    "revenue": rng.randrange(1, 500),
                },
                "timestamp": at(minute),
                "messageId": f"m{n}",
            }
        )
    for n in range(users // 3):  # visitors become users, both ways Segment says
        minute = rng.randrange(0, 4 * 1440)
        visitor, user = f"v{rng.randrange(users // 2)}", rng.choice(names)
        if n % 2:
            lines.append(
                {
                    "type": "identify",
                    "userId": user,
                    "anonymousId": visitor,
                    "timestamp": at(minute),
                    "messageId": f"link-{n}",
                }
            )
        else:
            lines.append(
                {
                    "type": "alias",
                    "userId": user,
                    "previousId": visitor,
                    "timestamp": at(minute),
                    "messageId": f"alias-{n}",
                }
            )
    lines += ['{"type": "track"', {"type": "track", "event": "Signed Up", "timestamp": at(1)}]
    lines += [lines[users + 3], lines[users + 7]]  # duplicates
    rng.shuffle(lines)
    return lines


@pytest.mark.parametrize("workers", [2, 3, 5])
@pytest.mark.parametrize("seed", [1, 2])
def test_workers_write_the_trace_one_process_writes(
    tmp_path: Path, workers: int, seed: int
) -> None:
    path = write(tmp_path / "events.jsonl", busy_stream(seed))
    alone, alone_end = in_one_process(PROJECT, path)
    split, split_end = in_workers(PROJECT, path, workers)
    assert alone.count(b"\n") > 500  # a trace worth comparing
    assert b'"type":"message"' in alone and b'"converted"' in alone
    assert split == alone
    assert split_end == alone_end
    assert len(alone_end[4]) == 2  # the two bad lines, reported once


@pytest.mark.parametrize("held", [2, 6])
def test_ticks_sent_without_an_event_fire_the_same_timers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: int
) -> None:
    """A worker given no event for a while gets its ticks alone (at most ``held`` numbers
    wait); they fire its timers where the ticks that come with an event do."""
    monkeypatch.setattr(simulation_workers, "_TICKS_HELD", held)
    path = write(tmp_path / "events.jsonl", busy_stream(3))
    alone = in_one_process(PROJECT, path)
    for workers in (2, 3):
        assert in_workers(PROJECT, path, workers) == alone


def test_send_heavy_journeys_split_alike(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import send_heavy_stream

    path = tmp_path / "send-heavy.jsonl"
    send_heavy_stream.write_stream(path, 6000, 400, 3)
    alone, alone_end = in_one_process(SEND_HEAVY, path)
    assert alone.count(b"\n") > 6000
    for workers in (2, 4):
        assert in_workers(SEND_HEAVY, path, workers) == (alone, alone_end)


@st.composite
def linked_streams(draw: st.DrawFn) -> list[dict[str, Any] | str]:
    """Few users, many ids: chains of aliases and identifies between anonymous and known
    ids, at colliding times."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    users = [f"u{i}" for i in range(draw(st.integers(1, 6)))]
    visitors = [f"v{i}" for i in range(draw(st.integers(0, 6)))]
    lines: list[dict[str, Any] | str] = []
    for n, user in enumerate(users):
        lines.append(
            {
                "type": "identify",
                "userId": user,
                "traits": profile(user, rng),
                "timestamp": at(draw(st.sampled_from([0, 1]))),
                "messageId": f"i{n}",
            }
        )
    for n in range(draw(st.integers(0, 40))):
        minute = draw(st.sampled_from([0, 1, 30, 60, 61, 1440, 1500]))
        kind = draw(st.sampled_from(["track", "track", "track", "identify", "alias"]))
        user = draw(st.sampled_from(users))
        other = draw(st.sampled_from([*visitors, *users])) if visitors or users else user
        if kind == "track":
            ids: dict[str, Any] = {"anonymousId": other} if other in visitors else {"userId": other}
            lines.append(
                {
                    "type": "track",
                    "event": draw(st.sampled_from(NAMES)),
                    **ids,
                    "properties": {"category": "electronics", "revenue": 100},
                    "timestamp": at(minute),
                    "messageId": f"m{n}",
                }
            )
        elif kind == "identify":
            link = {"anonymousId": other} if other in visitors else {}
            lines.append(
                {
                    "type": "identify",
                    "userId": user,
                    **link,
                    "traits": {"locale": "en"},
                    "timestamp": at(minute),
                    "messageId": f"m{n}",
                }
            )
        else:
            lines.append(
                {
                    "type": "alias",
                    "userId": user,
                    "previousId": other,
                    "timestamp": at(minute),
                    "messageId": f"m{n}",
                }
            )
    if draw(st.booleans()):
        lines = draw(st.permutations(lines))
    return lines


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(messages=linked_streams(), workers=st.integers(2, 4))
def test_any_stream_splits_alike(tmp_path: Path, messages: list[Any], workers: int) -> None:
    path = write(tmp_path / "stream.jsonl", messages)
    assert in_workers(PROJECT, path, workers) == in_one_process(PROJECT, path)


def test_linked_ids_share_a_worker() -> None:
    shards = UserShards(7)

    def event(raw: dict[str, Any]) -> Any:
        return parse_message({"timestamp": at(0), "messageId": "x", **raw})

    links = [
        {"type": "identify", "userId": "a", "anonymousId": "v1"},
        {"type": "alias", "userId": "b", "previousId": "v1"},  # v1 is a's: refused, still joined
        {"type": "alias", "userId": "c", "previousId": "b"},
    ]
    for raw in links:
        shards.learn(event(raw))
    group = {
        shards.of(event({"type": "track", "event": "x", **ids}))
        for ids in (
            {"userId": "a"},
            {"anonymousId": "v1"},
            {"userId": "b"},
            {"userId": "c"},
            {"anonymousId": "b"},
            {"userId": "a", "anonymousId": "v9"},
        )
    }
    assert len(group) == 1
    spread = {
        shards.of(event({"type": "track", "event": "x", "userId": f"x{n}"})) for n in range(200)
    }
    assert spread == set(range(7))  # unlinked users spread over every worker


def test_cli_splits_a_large_file_and_says_the_same(tmp_path: Path) -> None:
    path = write(tmp_path / "events.jsonl", busy_stream(3, users=80, events=3000))

    def simulate(*extra: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "simulate",
                str(ROOT / "journeys"),
                str(path),
                *extra,
            ],
            capture_output=True,
            check=False,
            timeout=120,
        )

    one, three = simulate("--workers", "1"), simulate("--workers", "3")
    assert one.returncode == three.returncode == 1  # the two bad lines
    assert one.stdout == three.stdout and one.stdout.count(b"\n") > 1000
    assert one.stderr == three.stderr
    assert b"invalid line(s)" in three.stderr


def test_an_unreadable_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "events.jsonl", busy_stream(4, users=5, events=20))
    file = EventFile(path)

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(EventFile, "in_time_order", unreadable)
    with pytest.raises(PermissionError):
        simulate_in_workers(PROJECT, file, 2, horizon_after, lambda chunk: None, lambda n: None)


def test_links_are_found_however_the_ids_are_written(tmp_path: Path) -> None:
    """The scan for links reads ids as the parser does: a number is an id, an escaped
    type or key is still one, and a line that only mentions one is no link; an identify
    with a user id alone links nothing, so it need not be seen."""
    lines = [
        {
            "type": "identify",
            "userId": 123,
            "anonymousId": "v1",
            "timestamp": at(0),
            "messageId": "a",
        },
        '{"type": "\\u0069dentify", "userId": "u2", "anonymousId": "v2", '
        f'"timestamp": "{at(1)}", "messageId": "b"}}',
        {
            "type": "track",
            "event": "alias identify",
            "userId": "u3",
            "anonymousId": "v3",
            "timestamp": at(2),
            "messageId": "c",
        },
        '{"type": "identify", "userId": "u4", "anonymous\\u0049d": "v4", '
        f'"timestamp": "{at(3)}", "messageId": "d"}}',
        {"type": "identify", "userId": "u5", "timestamp": at(4), "messageId": "e"},
        {"type": "alias", "userId": "u6", "previousId": "v6", "timestamp": at(5), "messageId": "f"},
    ]
    path = write(tmp_path / "links.jsonl", lines)
    learnt: list[tuple[Any, ...]] = []
    EventFile(path).in_time_order(
        lambda e: learnt.append((e.user_id, e.anonymous_id or e.previous_id))
    )
    assert sorted(learnt) == [("123", "v1"), ("u2", "v2"), ("u4", "v4"), ("u6", "v6")]


def test_a_journey_that_does_not_compile_stops_the_reader(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "broken.yaml").write_text("id: broken\ntrigger: {event: 'X'}\nsteps: [\n")
    path = write(tmp_path / "events.jsonl", busy_stream(5, users=10, events=200))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "simulate",
            "--workers",
            "2",
            str(journeys),
            str(path),
        ],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == b""
    assert b"broken.yaml" in done.stderr


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


@pytest.mark.parametrize(
    ("workers", "victim"),
    [(2, 0), (2, 2), (1, 0)],
    ids=["reader", "worker", "one-process reader"],
)
def test_a_killed_process_fails_the_simulation_cleanly(
    tmp_path: Path, workers: int, victim: int
) -> None:
    """kill -9 of the reader or of a worker (``--workers 1`` reads in a forked reader
    too, which used to end in a traceback): the command says so and exits 1; nothing
    hangs and no process is left behind."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import send_heavy_stream

    path = tmp_path / "events.jsonl"
    send_heavy_stream.write_stream(path, 60_000, 4_000, 5)
    journeys = ROOT / "benchmarks" / "send_heavy" / "journeys"
    command = [sys.executable, "-m", "engine.cli", "simulate", "--workers", str(workers)]
    process = subprocess.Popen(
        [*command, str(journeys), str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    expected = 1 + workers if workers > 1 else 1  # the reader first, then the workers
    children: list[int] = []
    for _ in range(200):
        children = _children(process.pid)
        if len(children) == expected:
            break
        time.sleep(0.02)
    assert len(children) == expected, children
    time.sleep(0.3)
    os.kill(children[victim], signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert b"stopped (killed?) before the end; the trace above is incomplete" in stderr
    assert b"Traceback" not in stderr
    for child in children:
        assert (
            not Path(f"/proc/{child}").exists()
            or b"zombie" in Path(f"/proc/{child}/status").read_bytes().lower()
        )


def _in_time_order(messages: list[dict[str, Any] | str], offsets: bool) -> list[Any]:
    """The messages sorted by time (the bad lines last), so the file is streamed; with
    ``offsets`` the times are written as +08:00 (the order check then decodes lines)."""
    good = [m for m in messages if isinstance(m, dict) and "timestamp" in m]
    good.sort(key=lambda m: m["timestamp"])
    if offsets:
        for message in good:
            moment = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
            message["timestamp"] = moment.astimezone(timezone(timedelta(hours=8))).isoformat()
    return [*good, *(m for m in messages if not (isinstance(m, dict) and "timestamp" in m))]


@pytest.mark.parametrize("offsets", [False, True], ids=["utc", "offsets"])
def test_a_file_in_time_order_is_streamed_to_the_workers_alike(
    tmp_path: Path, offsets: bool
) -> None:
    path = write(tmp_path / "events.jsonl", _in_time_order(busy_stream(7), offsets))
    assert EventFile(path).in_time_order()
    alone = in_one_process(PROJECT, path)
    assert alone[0].count(b"\n") > 500
    for workers in (2, 3):
        assert in_workers(PROJECT, path, workers) == alone
