"""The first pass over an event file shared with a helper process gives what one
process gives: the same trace, counts, errors and duplicates, and a clean failure when
the helper is killed."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import msgspec
import pytest

import engine.event_files as event_files
import engine.event_spool as event_spool
import engine.routed_events as routed_events
from engine.event_files import EventFile, micros
from engine.event_lines import event_from_bytes, is_event_bytes
from engine.event_spool import Spool
from engine.events import Event
from engine.forked import WorkerFailed
from engine.routed_events import routed
from tests.engine.test_event_lines import _beyond_64_bits, _same
from tests.engine.test_simulation_workers import (
    PROJECT,
    at,
    busy_stream,
    horizon_after,
    in_one_process,
    in_workers,
    simulate_in_workers,
    write,
)


@pytest.fixture
def helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file is large enough to share its first pass."""
    monkeypatch.setattr(event_files, "HELPER_FROM_BYTES", 0)


def _across_the_halves(seed: int) -> list[dict[str, Any] | str]:
    """A busy stream, shuffled, where the front half holds the first copy of messages
    whose second copy is in the back half (and the reverse), links that only the back
    half holds for users the front half has events of, and bad lines in both."""
    lines = busy_stream(seed, users=40, events=1200)
    rng = random.Random(seed)
    half = len(lines) // 2
    front, back = lines[:half], lines[half:]
    copies = [m for m in front if isinstance(m, dict)][:30] + [
        m for m in back if isinstance(m, dict)
    ][-30:]
    back += copies[:30]
    front += copies[30:]
    back.append(
        {
            "type": "alias",
            "userId": "u1",
            "previousId": "v3",
            "timestamp": at(1),
            "messageId": "late",
        }
    )
    front.insert(rng.randrange(len(front)), "{not json")
    back.insert(rng.randrange(len(back)), {"type": "track", "timestamp": at(2), "messageId": "x"})
    return front + back


@pytest.mark.usefixtures("helper")
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("share", [0.2, 0.45, 0.8])
def test_a_shared_first_pass_gives_the_trace_of_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, share: float
) -> None:
    monkeypatch.setattr(event_files, "HELPER_SHARE", share)
    path = write(tmp_path / "events.jsonl", _across_the_halves(seed))
    assert not EventFile(path).in_time_order()  # so the first pass is the sort's
    alone, alone_end = in_one_process(PROJECT, path)
    split, split_end = in_workers(PROJECT, path, 2)
    assert alone.count(b"\n") > 400
    assert split == alone
    assert split_end == alone_end
    assert alone_end[3] >= 60  # duplicates, some across the halves
    assert len(alone_end[4]) == 4  # the bad lines, each reported once, in file order


def _in_order(lines: list[dict[str, Any] | str]) -> list[dict[str, Any] | str]:
    """The messages sorted by time, each moved to a whole minute (the order check then
    reads blocks of plain times, the back half's in the helper)."""
    kept = [dict(m) for m in lines if isinstance(m, dict) and "timestamp" in m]
    kept.sort(key=lambda m: str(m["timestamp"]))
    for minute, message in enumerate(kept):
        message["timestamp"] = at(minute)
    return [*kept]


@pytest.mark.usefixtures("helper")
def test_a_shared_order_check_finds_the_links_of_both_halves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "events.jsonl", [*_in_order(_across_the_halves(4)), "{not json"])

    def decoding(self: EventFile) -> bool:
        raise AssertionError("plain times in order need no decoding")

    with monkeypatch.context() as patched:
        patched.setattr(EventFile, "_lines_in_order", decoding)
        assert EventFile(path).in_time_order()
    alone = in_one_process(PROJECT, path)
    assert in_workers(PROJECT, path, 3) == alone


@pytest.mark.usefixtures("helper")
@pytest.mark.parametrize("sorted_file", [False, True], ids=["shuffled", "in order"])
def test_a_killed_helper_fails_the_simulation_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sorted_file: bool
) -> None:
    lines = _across_the_halves(5)
    if sorted_file:
        lines = _in_order(lines)
    path = write(tmp_path / "events.jsonl", lines)

    def killed(*args: Any) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)  # in the helper: forked from the reader

    read_part = routed_events._read_part

    def killed_in_the_back(path: Path, start: int, *args: Any) -> Any:
        return killed() if start else read_part(path, start, *args)  # the front is the reader's

    monkeypatch.setattr(event_files, "_back_times", killed)
    monkeypatch.setattr(routed_events, "_read_part", killed_in_the_back)
    with pytest.raises(WorkerFailed, match="a helper process stopped"):
        simulate_in_workers(
            PROJECT, EventFile(path), 2, horizon_after, lambda chunk: None, lambda n: None
        )


class _AllButPages:
    """A router wanting every event but pages, numbering keys as it meets them."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def learn(self, event: Event) -> None:
        pass

    def start(self) -> None:
        pass

    def wants(self, event: Event) -> bool:
        return event.type != "page"

    def key_id(self, key: str, events: int) -> int:
        return self.ids.setdefault(key, len(self.ids))

    def placed(self) -> None:
        pass


def _with_odd_values(seed: int) -> list[dict[str, Any] | str]:
    """The halves' stream, with pages (not wanted), and integers beyond 64 bits (events
    MessagePack cannot hold) in some properties."""
    lines = _across_the_halves(seed)
    for n, line in enumerate(lines):
        if isinstance(line, dict) and line.get("type") == "track":
            if n % 7 == 0:
                line = lines[n] = {**line, "properties": {"big": [2**64 + n, {"x": -(2**70)}]}}
            elif n % 11 == 0:
                lines[n] = {**line, "type": "page", "name": "Home"}
    return lines


def _handed_over(path: Path) -> tuple[list[tuple[int, Event, bool]], Any]:
    """What :func:`routed` hands the workers, read back as a worker reads it."""
    file = EventFile(path)
    got = []
    for number, data, _key, moment, packed in routed(file, _AllButPages()):
        assert packed == is_event_bytes(data)
        event = event_from_bytes(data) if packed else file.parse_line(data, number)
        assert event is not None
        assert micros(event.timestamp) == moment
        got.append((number, event, packed))
    return got, file.tally()


@pytest.mark.usefixtures("helper")
@pytest.mark.parametrize("sorted_file", [False, True], ids=["shuffled", "in order"])
@pytest.mark.parametrize("spool", ["spool", "no room", "copied by hand"])
def test_events_reach_the_workers_value_for_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sorted_file: bool, spool: str
) -> None:
    """The wanted events in time order, each as its bytes (from the spool, for a file
    that is sorted first) or, where it has none, as its line; without room for a spool,
    as lines from the file; with nothing left open."""
    lines = _with_odd_values(6)
    path = tmp_path / "events.jsonl"
    path.write_bytes(  # orjson writes no integer beyond 64 bits
        b"\n".join(
            m.encode() if isinstance(m, str) else msgspec.json.encode(m)
            for m in (_in_order(lines) if sorted_file else lines)
        )
    )
    if spool == "no room":
        monkeypatch.setattr(Spool, "room_for", classmethod(lambda cls, size: False))
    elif spool == "copied by hand":

        def refused(*args: Any) -> int:
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(event_spool.os, "copy_file_range", refused)
    expected_file = EventFile(path)
    expected = [(n, e) for n, _, e in expected_file.records() if e.type != "page"]
    open_before = len(os.listdir("/proc/self/fd"))
    got, tally = _handed_over(path)
    assert len(os.listdir("/proc/self/fd")) == open_before
    assert tally == expected_file.tally()
    assert [n for n, _, _ in got] == [n for n, _ in expected]
    assert all(
        _same(tuple(mine), tuple(theirs))
        for (_, mine, _), (_, theirs) in zip(got, expected, strict=True)
    )
    as_lines = {n for n, event, packed in got if not packed}
    beyond = {n for n, event, _ in got if _beyond_64_bits(tuple(event))}
    assert len(beyond) > 10 and len(got) > 1000
    if spool == "no room" and not sorted_file:
        assert as_lines == {n for n, _, _ in got}  # read back from the file
    else:
        assert as_lines == beyond
