"""Event-file lines: the one-pass decoder agrees with the general path wherever it answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidMessage
from engine.event_lines import (
    MAX_DEPTH,
    decode_line,
    event_bytes,
    event_from_bytes,
    is_event_bytes,
    plain_line,
)
from engine.events import Event, parse_message
from tests.engine.test_events import _messages

LINE = (
    b'{"type":"track","event":"Order Completed","userId":"u1","properties":{"total":1},'
    b'"timestamp":"2026-03-01T10:00:00.5Z","messageId":"m1",'
    b'"context":{"library":{"name":"analytics-python"}}}'
)


def _general(line: bytes) -> object:
    """What the general path makes of ``line``: the event, or why not."""
    try:
        raw = decode_line(line)
    except msgspec.DecodeError:
        return "invalid JSON"
    has_id = type(raw) is dict and raw.get("messageId") is not None
    try:
        return parse_message(raw, default_message_id=None if has_id else "f:1")
    except InvalidMessage as exc:
        return ("invalid", exc.field)


def _same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0, a list no tuple, -0.0
    not 0.0). A walk, not recursion: lines nest up to MAX_DEPTH."""
    pairs = [(a, b)]
    while pairs:
        x, y = pairs.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, dict):
            assert isinstance(y, dict)
            if list(x) != list(y):
                return False
            pairs.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list | tuple):
            assert isinstance(y, list | tuple)
            if len(x) != len(y):
                return False
            pairs.extend(zip(x, y, strict=True))
        elif isinstance(x, float | datetime):
            if x != y or repr(x) != repr(y):
                return False
        elif x != y:
            return False
    return True


def _leaves(value: Any) -> list[Any]:
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        else:
            found.append(item)
    return found


def _beyond_64_bits(value: Any) -> bool:
    return any(type(v) is int and not -(2**63) <= v < 2**64 for v in _leaves(value))


def _crosses(event: Event) -> None:
    """Handed to another process, ``event`` arrives value for value, or as its line (only
    when it holds an integer MessagePack cannot)."""
    data = event_bytes(event)
    assert (data is None) == _beyond_64_bits(tuple(event))
    if data is not None:
        assert is_event_bytes(data)
        back = event_from_bytes(data)
        assert type(back) is Event
        assert _same(tuple(back), tuple(event))
        assert back.timestamp.tzinfo is UTC


def _agrees(line: bytes) -> Event | None:
    fast = plain_line(line)
    slow = _general(line)
    if isinstance(slow, Event):
        _crosses(slow)
    if fast is not None:
        assert fast == slow
        assert isinstance(slow, Event)
        assert repr(fast.timestamp) == repr(slow.timestamp)
        assert type(fast.context) is type(slow.context)
        _crosses(fast)
    assert not is_event_bytes(line)
    return fast


def test_a_plain_line_is_read_in_one_pass() -> None:
    event = _agrees(LINE)
    assert event is not None
    assert event.name == "Order Completed"
    assert event.properties == {"total": 1}
    assert event.timestamp == datetime(2026, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"   \n",
        b"[]",
        b'{"type":"track"}',
        LINE.replace(b'"userId":"u1"', b'"userId":7'),  # numeric ids are the models' to read
        LINE.replace(b'"messageId":"m1",', b""),  # the default id is the file's to give
        LINE.replace(b'"timestamp"', b'"stamp"'),
        LINE.replace(b'"type":"track"', b'"type":"Track"'),
        LINE.replace(b'"event":"Order Completed",', b'"unknown":1,"event":"Go",'),
        LINE.replace(b"2026-03-01T10:00:00.5Z", b"2026-03-01 10:00:00Z"),
        LINE.replace(b"2026-03-01T10:00:00.5Z", b"2026-03-01t10:00:00z"),
        LINE.replace(b"2026-03-01T10:00:00.5Z", b"2026-03-01T10:00:00.1234567Z"),
        LINE.replace(b'{"total":1}', b"null"),
        LINE.replace(b'{"total":1}', b'{"total":1e400}'),
        LINE.replace(b'{"total":1}', b'{"total":NaN}'),
        LINE.replace(b'"total"', b'"\xff"'),
        LINE.replace(b'"total"', b'"\\ud800"'),
        LINE.replace(b'"properties"', b'"properties":{"a":"\xff"},"properties"'),
        LINE.replace(b'"properties"', b'"properties":{"a":1e400},"properties"'),
        LINE + b"{}",
        b"\xef\xbb\xbf" + LINE,
    ],
)
def test_anything_else_takes_the_general_path(line: bytes) -> None:
    assert plain_line(line) is None
    _general(line)  # and that path decides, without raising


@pytest.mark.parametrize(
    "line",
    [
        LINE.replace(b"{", b" { ", 1).replace(b",", b" ,\n\t"),
        LINE.replace(b'"properties":{"total":1},', b""),
        LINE.replace(b'{"total":1}', b'{"total":123456789012345678901234567890}'),
        LINE.replace(b'"Order Completed"', b'"\\u4e0b\\u5355 \\"x\\""'),
        LINE.replace(b'"total"', b'"total":0,"total"'),
        LINE.replace(b'"userId":"u1"', b'"userId":"u0","userId":"u1"'),
        LINE.replace(b'"context":', b'"sentAt":"x","integrations":{"All":true},"context":'),
        b'{"type":"identify","anonymousId":"a1","messageId":"m2","timestamp":"2026-03-01T10:00:00+08:00",'
        b'"context":{"traits":{"plan":"pro"}}}',
        b'{"type":"alias","userId":"u1","previousId":"a1","messageId":"m3",'
        b'"timestamp":"2026-03-01T10:00:00"}',
        b'{"type":"group","userId":"u1","groupId":"g1","traits":{},"messageId":"m4",'
        b'"timestamp":"2026-03-01T10:00:00Z","properties":[1]}',
        b'{"type":"page","userId":"u1","name":null,"messageId":"m5",'
        b'"timestamp":"2026-03-01T10:00:00Z","context":{}}',
    ],
)
def test_plain_lines_agree_with_the_general_path(line: bytes) -> None:
    assert _agrees(line) is not None


def test_integers_keep_their_value_at_any_size() -> None:
    line = LINE.replace(b'{"total":1}', b'{"order":123456789012345678901234567890}')
    event = _agrees(line)
    assert event is not None and event.properties == {"order": 123456789012345678901234567890}


def _nested(depth: int) -> bytes:
    inner = b"[" * (depth - 2) + b"]" * (depth - 2)  # properties and the line are two
    return LINE.replace(b'{"total":1}', b'{"x":' + inner + b',"s":"' + b"[" * 600 + b'"}')


def test_nesting_is_limited_exactly_whatever_the_stack() -> None:
    assert _agrees(_nested(MAX_DEPTH)) is not None
    assert decode_line(_nested(MAX_DEPTH))
    assert plain_line(_nested(MAX_DEPTH + 1)) is None
    with pytest.raises(msgspec.DecodeError, match="nested more than 512 deep"):
        decode_line(_nested(MAX_DEPTH + 1))


def _dumps(raw: dict[Any, Any], style: int) -> bytes:
    if style == 0:
        return json.dumps(raw, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    if style == 1:
        return json.dumps(raw, ensure_ascii=True, default=str).encode()
    return json.dumps(raw, indent=1, sort_keys=True, ensure_ascii=False, default=str).encode()


_EXTRAS = st.dictionaries(
    st.sampled_from(["sentAt", "integrations", "channel", "version", "other", "properties"]),
    st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just({"All": True})),
    max_size=2,
)


@settings(max_examples=1500, deadline=None)
@given(raw=_messages(), extras=_EXTRAS, style=st.integers(0, 2))
def test_the_one_pass_decoder_agrees_with_the_general_path(
    raw: dict[Any, Any], extras: dict[str, Any], style: int
) -> None:
    try:
        line = _dumps({**raw, **extras}, style)
    except ValueError:  # a NaN the generator made: not JSON
        return
    _agrees(line)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(properties=st.dictionaries(st.text(max_size=4), _JSON, max_size=4))
def test_events_cross_to_another_process_value_for_value(properties: dict[str, Any]) -> None:
    line = LINE.replace(b'{"total":1}', msgspec.json.encode(properties))
    event = _agrees(line)
    assert event is not None
    data = event_bytes(event)
    beyond = any(type(v) is int and not -(2**63) <= v < 2**64 for v in _leaves(properties))
    assert (data is None) == beyond  # the line goes instead, and only then
    if data is not None:
        assert _same(event_from_bytes(data).properties, properties)


def test_integers_beyond_64_bits_hand_over_the_line() -> None:
    for fits in (2**64 - 1, -(2**63), 0, -1):
        event = plain_line(LINE.replace(b'{"total":1}', b'{"n":%d}' % fits))
        assert event is not None and event_bytes(event) is not None
    for beyond in (2**64, -(2**63) - 1, 10**30):
        event = plain_line(LINE.replace(b'{"total":1}', b'{"n":[1,{"m":%d}]}' % beyond))
        assert event is not None and event_bytes(event) is None
    assert not is_event_bytes(b"") and not is_event_bytes(b" {}")
