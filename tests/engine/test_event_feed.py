"""engine.event_feed: an event file read by a second process, only wanted events sent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from engine.event_feed import EventFeed
from engine.event_files import EventFile
from engine.events import Event


def track(event: str, hour: int, message_id: str, **extra: Any) -> str:
    raw = {
        "type": "track",
        "event": event,
        "userId": "u1",
        "timestamp": f"2026-03-01T{hour:02d}:00:00Z",
        "messageId": message_id,
        **extra,
    }
    return json.dumps(raw)


def wanted(event: Event) -> bool:
    return event.name != "skipped"


def summary(file: EventFeed | EventFile) -> tuple[Any, ...]:
    return (file.count, file.duplicates, file.errors, file.first, file.last)


LINES = {
    "in order": [
        track("a", 1, "m1"),
        track("skipped", 2, "m2"),
        "{oops",
        track("b", 3, "m3"),
        track("b", 3, "m3"),
        "",
        track("skipped", 4, "m4"),
    ],
    "out of order": [
        track("skipped", 9, "m1"),
        track("a", 5, "m2"),
        '{"type": "track"}',
        track("b", 1, "m3"),
        track("a", 5, "m2"),
        track("c", 7, "m4", properties={"n": 1}),
    ],
}


@pytest.mark.parametrize("fork", [True, False])
@pytest.mark.parametrize("case", sorted(LINES))
def test_the_feed_gives_the_wanted_events_and_the_whole_files_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, fork: bool
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(LINES[case]) + "\n", "utf-8")
    if not fork:
        monkeypatch.delattr(os, "fork")
    expected_file = EventFile(path)
    expected = [event for event in expected_file if wanted(event)]
    feed = EventFeed(EventFile(path), wanted)
    assert list(feed) == expected
    assert summary(feed) == summary(expected_file)
    assert feed.read == expected_file.count


def test_an_unreadable_file_raises_where_the_events_are_read(tmp_path: Path) -> None:
    feed = EventFeed(EventFile(tmp_path / "absent.jsonl"), wanted)
    with pytest.raises(OSError):
        list(feed)


def test_a_simulation_that_stops_early_leaves_no_reader_behind(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(track("a", n % 24, f"m{n}") for n in range(50_000)) + "\n")
    events = iter(EventFeed(EventFile(path), wanted))
    assert next(events).message_id == "m0"
    events.close()  # waits for the reader, which exits on the closed pipe
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
