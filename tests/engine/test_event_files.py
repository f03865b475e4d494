"""engine.event_files: JSON-lines event files, bad lines reported by number."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidMessage
from engine.event_files import EventFile, read_events
from engine.events import Event, parse_message


def track(event: str, ts: str, message_id: str | None = None, **extra: Any) -> str:
    raw: dict[str, Any] = {"type": "track", "event": event, "userId": "u1", "timestamp": ts}
    if message_id is not None:
        raw["messageId"] = message_id
    raw.update(extra)
    return json.dumps(raw)


def write(tmp_path: Path, lines: list[str], name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def load(path: Path) -> tuple[list[Event], EventFile]:
    """Iterate the file once; its errors and counts are complete afterwards."""
    file = EventFile(path)
    return list(file), file


def names(events: list[Event]) -> list[str | None]:
    return [e.name for e in events]


def test_reads_valid_lines(tmp_path: Path) -> None:
    path = write(tmp_path, [track("A", "2026-03-01T09:00:00Z", "m1")])
    events, file = load(path)
    assert names(events) == ["A"]
    assert file.errors == []
    assert file.duplicates == 0
    assert names(read_events(path)) == ["A"]


def test_bad_json_is_reported_and_other_lines_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            track("A", "2026-03-01T09:00:00Z", "m1"),
            "{not json",
            track("B", "2026-03-01T10:00:00Z", "m2"),
        ],
    )
    events, file = load(path)
    assert names(events) == ["A", "B"]
    assert len(file.errors) == 1
    assert file.errors[0].startswith(f"{path}:2: ")
    assert "JSON" in file.errors[0]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (
            json.dumps({"type": "track", "userId": "u1", "timestamp": "2026-03-01T09:00:00Z"}),
            "event",
        ),
        (
            json.dumps({"type": "track", "event": "E", "timestamp": "2026-03-01T09:00:00Z"}),
            "userId",
        ),
        (track("E", "not a time", "m9"), "timestamp"),
        (json.dumps({"type": "shout", "userId": "u1"}), "type"),
        (track("E", "2026-03-01T09:00:00Z", "m9", properties=[1]), "properties"),
    ],
)
def test_invalid_message_names_file_line_and_field(tmp_path: Path, bad: str, field: str) -> None:
    path = write(tmp_path, [track("A", "2026-03-01T09:00:00Z", "m1"), bad])
    events, file = load(path)
    assert names(events) == ["A"]
    assert len(file.errors) == 1
    assert file.errors[0].startswith(f"{path}:2: {field}:")


def test_non_object_line_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, ["[1, 2]", track("A", "2026-03-01T09:00:00Z", "m1")])
    events, file = load(path)
    assert names(events) == ["A"]
    assert len(file.errors) == 1
    assert file.errors[0].startswith(f"{path}:1: ")


@pytest.mark.parametrize("sorted_file", [True, False])
def test_duplicates_are_dropped_in_file_order_before_sorting(
    tmp_path: Path, sorted_file: bool
) -> None:
    if sorted_file:
        lines = [
            track("first", "2026-03-01T08:00:00Z", "m1"),
            track("second", "2026-03-01T09:00:00Z", "m2"),
            track("repeat", "2026-03-01T09:30:00Z", "m1"),
            track("third", "2026-03-01T10:00:00Z", "m3"),
        ]
        expected = ["first", "second", "third"]
    else:
        lines = [
            track("first", "2026-03-01T10:00:00Z", "m1"),
            track("repeat", "2026-03-01T08:00:00Z", "m1"),  # earlier, but a repeat
            track("second", "2026-03-01T09:00:00Z", "m2"),
            track("repeat2", "2026-03-01T11:00:00Z", "m1"),
        ]
        expected = ["second", "first"]
    events, file = load(write(tmp_path, lines))
    assert names(events) == expected
    assert file.duplicates == len(lines) - len(expected)
    assert file.errors == []


def test_sorted_by_timestamp_stable_for_equal_times(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            track("late", "2026-03-01T12:00:00Z", "m1"),
            track("tie1", "2026-03-01T09:00:00Z", "m2"),
            track("tie2", "2026-03-01T17:00:00+08:00", "m3"),  # same instant as tie1
            track("early", "2026-03-01T08:00:00Z", "m4"),
            track("tie3", "2026-03-01T09:00:00Z", "m5"),
        ],
    )
    assert names(read_events(path)) == ["early", "tie1", "tie2", "tie3", "late"]


def test_equal_times_in_a_sorted_file_keep_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            track("b", "2026-03-01T09:00:00Z", "m1"),
            track("a", "2026-03-01T17:00:00+08:00", "m2"),
            track("c", "2026-03-01T09:00:00", "m3"),  # naive: UTC
        ],
    )
    assert names(read_events(path)) == ["b", "a", "c"]


def test_offsets_are_compared_as_instants(tmp_path: Path) -> None:
    # In file order the wall clocks rise, but the instants go backwards.
    path = write(
        tmp_path,
        [
            track("second", "2026-03-01T09:00:00Z", "m1"),
            track("first", "2026-03-01T10:00:00+08:00", "m2"),  # 02:00Z
        ],
    )
    assert names(read_events(path)) == ["first", "second"]


def test_blank_lines_are_ignored_but_line_numbers_kept(tmp_path: Path) -> None:
    path = write(tmp_path, ["", "   ", track("A", "2026-03-01T09:00:00Z", "m1"), "", "{oops"])
    events, file = load(path)
    assert names(events) == ["A"]
    assert len(file.errors) == 1
    assert file.errors[0].startswith(f"{path}:5: ")


def test_missing_message_id_gets_a_per_line_default(tmp_path: Path) -> None:
    path = write(tmp_path, [track("A", "2026-03-01T09:00:00Z"), track("A", "2026-03-01T09:00:00Z")])
    events, file = load(path)
    assert file.duplicates == 0
    assert [e.message_id for e in events] == ["events.jsonl:1", "events.jsonl:2"]


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "crlf.jsonl"
    lines = [track("A", "2026-03-01T09:00:00Z", "m1"), track("B", "2026-03-01T09:00:01Z", "m2")]
    path.write_bytes("".join(line + "\r\n" for line in lines).encode())
    events, file = load(path)
    assert names(events) == ["A", "B"]
    assert file.errors == []


def test_unreadable_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        read_events(tmp_path / "absent.jsonl")


def test_a_nested_timestamp_does_not_hide_disorder(tmp_path: Path) -> None:
    # Only the top-level timestamp counts: one inside properties, a key spelled with
    # an escape or written with spaces must not fool the order check.
    path = write(
        tmp_path,
        [
            track("second", "2026-03-01T10:00:00Z", "m1", properties={"timestamp": "2026-01-01"}),
            '{"type": "track", "event": "third", "userId": "u1", "messageId": "m2", '
            '"\\u0074imestamp": "2026-03-01T11:00:00Z", "properties": {"timestamp": "x"}}',
            '{"properties": {"timestamp": "2026-03-01T12:00:00Z"}, "type": "track", '
            '"event": "first", "userId": "u1", "messageId": "m3", '
            '"timestamp" :  "2026-03-01T09:00:00Z"}',
        ],
    )
    assert not EventFile(path).in_time_order()
    assert names(read_events(path)) == ["first", "second", "third"]


_stamps = st.sampled_from(
    [
        '"2026-03-01T09:00:00Z"',
        '"2026-03-01T09:00:00.5Z"',
        '"2026-03-01T17:00:00+08:00"',
        '"2026-03-01T09:00:00"',
        '"2026-03-01T10:00:00Z"',
        '"2026-03-01 08:00:00Z"',
        '"bad"',
        "1772355600",
    ]
)


@st.composite
def _lines(draw: st.DrawFn) -> list[str]:
    lines = []
    for n in range(draw(st.integers(0, 12))):
        stamp = draw(_stamps)
        mid = draw(st.sampled_from(["m1", "m2", f"m{n + 10}"]))
        nested = draw(st.sampled_from(["", ', "properties": {"timestamp": ' + stamp + "}"]))
        key = draw(st.sampled_from(['"timestamp"', '"timestamp" ', '"\\u0074imestamp"', '"ts"']))
        lines.append(
            f'{{"type": "track", "event": "e{n}", "userId": "u1", "messageId": "{mid}", '
            f"{key}: {stamp}{nested}}}"
        )
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", "{oops", "[1]"])))
    return lines


@settings(max_examples=300, deadline=None)
@given(lines=_lines())
def test_files_read_as_parsing_everything_then_sorting_would(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), lines)
        events, file = load(path)
    expected: list[Event] = []
    seen: set[str] = set()
    errors = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = parse_message(json.loads(line), default_message_id=f"events.jsonl:{number}")
        except (ValueError, InvalidMessage):
            errors += 1
            continue
        if event.message_id not in seen:
            seen.add(event.message_id)
            expected.append(event)
    expected.sort(key=lambda e: e.timestamp)  # stable: file order among equal instants
    assert events == expected
    assert len(file.errors) == errors
    assert file.duplicates == len(lines) - errors - len(expected) - lines.count("")


@pytest.mark.parametrize(("batch", "gap"), [(1, 1), (3, 1), (3, 1 << 16), (4096, 1 << 16)])
def test_a_sorted_read_back_in_batches_finds_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int, gap: int
) -> None:
    import engine.event_files as event_files

    monkeypatch.setattr(event_files, "READ_BATCH", batch)
    monkeypatch.setattr(event_files, "READ_GAP", gap)
    hours = [5, 1, 9, 3, 3, 7, 0, 8, 2, 6, 4]
    lines = [track(f"e{h}-{n}", f"2026-03-01T{h:02d}:00:00Z", f"m{n}") for n, h in enumerate(hours)]
    lines.insert(4, "{oops")  # a bad line in between is skipped, not misread
    expected = [f"e{h}-{n}" for n, h in sorted(enumerate(hours), key=lambda p: p[1])]
    assert names(read_events(write(tmp_path, lines))) == expected


@pytest.mark.parametrize("block", [16, 200, 1 << 20])
def test_plain_times_are_checked_by_blocks_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    import engine.event_files as event_files

    monkeypatch.setattr(event_files, "ORDER_BLOCK", block)
    hours = [0, 1, 1, 2, 5, 7, 7, 8, 9, 11]
    lines = [track(f"e{n}", f"2026-03-01T{h:02d}:00:00Z", f"m{n}") for n, h in enumerate(hours)]

    def decoding(self: EventFile) -> bool:
        raise AssertionError("plain times in order need no decoding")

    with monkeypatch.context() as patched:
        patched.setattr(EventFile, "_lines_in_order", decoding)
        assert EventFile(write(tmp_path, lines)).in_time_order()
    lines[4], lines[5] = lines[5], lines[4]
    assert not EventFile(write(tmp_path, lines)).in_time_order()


def test_a_nested_plain_time_earlier_than_its_line_does_not_unsort_a_sorted_file(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        [
            track(
                "a", "2026-03-01T10:00:00Z", "m1", properties={"timestamp": "2026-03-01T09:00:00Z"}
            ),
            track("b", "2026-03-01T11:00:00Z", "m2"),
        ],
    )
    assert EventFile(path).in_time_order()


_plain_stamps = st.sampled_from(
    ['"2026-03-01T09:00:00Z"', '"2026-03-01T10:00:00Z"', '"2026-03-01T09:30:00.5Z"']
)


@st.composite
def _plain_lines(draw: st.DrawFn) -> list[str]:
    lines = []
    for n in range(draw(st.integers(0, 12))):
        stamp = draw(st.one_of(_plain_stamps, _stamps))
        nested = draw(st.sampled_from(["", ', "properties": {"timestamp": ' + stamp + "}"]))
        key = draw(st.sampled_from(['"timestamp"', '"timestamp" ', '"ts"', '"my_timestamp"']))
        lines.append(
            f'{{"type": "track", "event": "e{n}", "userId": "u1", {key}: {stamp}{nested}}}'
        )
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", "{oops", "[1]", '"timestamp"'])))
    return lines


@settings(max_examples=300, deadline=None)
@given(lines=_plain_lines(), block=st.sampled_from([8, 64, 1 << 20]), helper=st.booleans())
def test_the_order_check_by_blocks_answers_as_decoding_every_line(
    lines: list[str], block: int, helper: bool
) -> None:
    """Also when a helper process checks the back half (any file is large enough then)."""
    import engine.event_files as event_files

    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), lines)
        saved = event_files.ORDER_BLOCK, event_files.HELPER_FROM_BYTES
        event_files.ORDER_BLOCK = block
        event_files.HELPER_FROM_BYTES = 0 if helper else saved[1]
        try:
            assert EventFile(path).in_time_order() == EventFile(path)._lines_in_order()
        finally:
            event_files.ORDER_BLOCK, event_files.HELPER_FROM_BYTES = saved


@pytest.mark.parametrize(
    ("back_hours", "in_order"),
    [
        ([5, 6, 7, 8], True),
        ([4, 6, 7, 8], True),  # equal times at the seam
        ([3, 6, 7, 8], False),  # each half in order, the back starting earlier
        ([5, 6, 2, 8], False),
    ],
)
def test_a_helper_checks_the_back_half_and_the_seam(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, back_hours: list[int], in_order: bool
) -> None:
    import engine.event_files as event_files

    monkeypatch.setattr(event_files, "HELPER_FROM_BYTES", 0)
    monkeypatch.setattr(event_files, "HELPER_SHARE", 0.55)  # the back half: from line 5
    hours = [1, 2, 3, 4, *back_hours]
    lines = [track(f"e{n}", f"2026-03-01T{h:02d}:00:00Z", f"m{n}") for n, h in enumerate(hours)]
    path = write(tmp_path, lines)
    assert EventFile(path).helper_start() == sum(len(line) + 1 for line in lines[:4])
    assert EventFile(path).in_time_order() is in_order
    assert [e.name for e in read_events(path)] == [
        f"e{n}" for n, _ in sorted(enumerate(hours), key=lambda item: (item[1], item[0]))
    ]


@pytest.mark.parametrize("block", [8, 1 << 20])
def test_decoding_resumes_after_the_blocks_from_the_last_line_time_not_a_nested_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """The blocks' last time can be a nested one, later than any line's own time."""
    import engine.event_files as event_files

    monkeypatch.setattr(event_files, "ORDER_BLOCK", block)
    nested = '{"type": "track", "event": "e0", "userId": "u1", "ts": "2026-03-01T10:00:00Z", '
    lines = [
        track("a", "2026-03-01T07:00:00Z", "ma"),
        nested + '"properties": {"timestamp": "2026-03-01T10:00:00Z"}}',
        track("e1", "2026-03-01T08:00:00Z", "m1"),
        track("e2", "2026-03-01T09:00:00+01:00", "m2"),  # not plain: decoding starts here
        track("e3", "2026-03-01T08:30:00Z", "m3"),
    ]
    path = write(tmp_path, lines)
    assert EventFile(path).in_time_order()
    lines.append(track("e4", "2026-03-01T07:59:00Z", "m4"))
    assert not EventFile(write(tmp_path, lines)).in_time_order()
    lines[2] = track("e1", "2026-03-01T06:00:00Z", "m1")  # before the first line's time
    del lines[-1]
    assert not EventFile(write(tmp_path, lines)).in_time_order()


@pytest.mark.parametrize("helper", [False, True])
@pytest.mark.parametrize("block", [90, 200, 1 << 20])
def test_the_order_check_hands_over_every_link_once_the_file_is_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, helper: bool
) -> None:
    """Wherever the blocks fall, the search for links on the way (the reader's part and
    the helper's) misses none."""
    import engine.event_files as event_files

    monkeypatch.setattr(event_files, "ORDER_BLOCK", block)
    if helper:
        monkeypatch.setattr(event_files, "HELPER_FROM_BYTES", 0)
    lines = []
    for n in range(12):
        stamp = f"2026-03-01T{n + 1:02d}:00:00Z"
        lines.append(track(f"e{n}", stamp, f"m{n}"))
        link = {"type": "identify", "userId": f"u{n}", "anonymousId": f"a{n}"}
        lines.append(json.dumps({**link, "timestamp": stamp, "messageId": f"l{n}"}))
    found: set[tuple[str | None, str | None]] = set()
    assert EventFile(write(tmp_path, lines)).in_time_order(
        lambda event: found.add((event.user_id, event.anonymous_id))
    )
    assert found == {(f"u{n}", f"a{n}") for n in range(12)}
