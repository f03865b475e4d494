"""engine.durations: durations, times of day, and the next local wall-clock time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.durations import iso_z, next_local_time, parse_duration, parse_time_of_day

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45m", timedelta(minutes=45)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1s", timedelta(seconds=1)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
    ],
)
def test_parse_duration_accepts_unit_sequences(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "bad",
    ["0s", "0h0m", "5x", "1.5h", "", "-5m", "1h 30m", "h", "1H", 30, None],
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_parse_duration_error_quotes_the_input() -> None:
    with pytest.raises(ValueError, match="5x"):
        parse_duration("5x")


def test_zero_duration_error_says_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        parse_duration("0s")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10:00", time(10, 0)),
        ("9:05", time(9, 5)),
        ("00:00", time(0, 0)),
        ("23:59", time(23, 59)),
        ("08:30:15", time(8, 30, 15)),
    ],
)
def test_parse_time_of_day(text: str, expected: time) -> None:
    assert parse_time_of_day(text) == expected


@pytest.mark.parametrize("bad", ["24:00", "10:60", "10:5", "1000", "10", "", 600, None])
def test_parse_time_of_day_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_time_of_day(bad)


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 09:59:59 in Shanghai (UTC+8): later the same day.
        (_utc(2026, 3, 1, 1, 59, 59), _utc(2026, 3, 1, 2, 0)),
        # exactly 10:00 local: strictly after, so the next day's.
        (_utc(2026, 3, 1, 2, 0), _utc(2026, 3, 2, 2, 0)),
        # 10:00:01 local: the next day's.
        (_utc(2026, 3, 1, 2, 0, 1), _utc(2026, 3, 2, 2, 0)),
        # 23:00 UTC is already 07:00 the next day in Shanghai.
        (_utc(2026, 3, 1, 23, 0), _utc(2026, 3, 2, 2, 0)),
    ],
)
def test_next_local_time_shanghai(now: datetime, expected: datetime) -> None:
    assert next_local_time(now, time(10, 0), SHANGHAI) == expected


def test_next_local_time_new_york_exactly_at_is_next_day() -> None:
    now = datetime(2026, 6, 1, 10, 0, tzinfo=NEW_YORK)  # EDT, 14:00 UTC
    result = next_local_time(now, time(10, 0), NEW_YORK)
    assert result == _utc(2026, 6, 2, 14, 0)
    assert result.astimezone(NEW_YORK).time() == time(10, 0)


def test_next_local_time_new_york_winter_offset() -> None:
    now = _utc(2026, 1, 15, 12, 0)  # 07:00 EST
    assert next_local_time(now, time(10, 0), NEW_YORK) == _utc(2026, 1, 15, 15, 0)


def test_next_local_time_keeps_the_tzinfo_of_now() -> None:
    now = _utc(2026, 3, 1, 0, 0)
    assert next_local_time(now, time(10, 0), SHANGHAI).tzinfo is UTC


def test_spring_forward_gap_resolves_as_if_the_clock_had_not_jumped() -> None:
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
    now = _utc(2026, 3, 8, 5, 0)  # 00:00 EST
    result = next_local_time(now, time(2, 30), NEW_YORK)
    # 02:30 EST would be 07:30 UTC (03:30 EDT on the wall).
    assert result == _utc(2026, 3, 8, 7, 30)
    assert result > now


def test_spring_forward_after_the_gap_goes_to_next_day() -> None:
    now = _utc(2026, 3, 8, 8, 0)  # 04:00 EDT
    result = next_local_time(now, time(2, 30), NEW_YORK)
    assert result == _utc(2026, 3, 9, 6, 30)  # 02:30 EDT on the 9th
    assert result.astimezone(NEW_YORK).time() == time(2, 30)


@pytest.mark.parametrize(
    "now",
    [
        _utc(2026, 11, 1, 4, 0),  # 00:00 EDT
        _utc(2026, 11, 1, 5, 0),  # 01:00 EDT
        _utc(2026, 11, 1, 5, 30),  # 01:30 EDT (first pass)
        _utc(2026, 11, 1, 6, 0),  # 01:00 EST (second pass)
        _utc(2026, 11, 1, 6, 30),  # 01:30 EST (second pass)
        _utc(2026, 11, 1, 7, 0),  # 02:00 EST
    ],
)
def test_fall_back_returns_one_valid_instant_strictly_after_now(now: datetime) -> None:
    # 2026-11-01 in New York: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    result = next_local_time(now, time(1, 30), NEW_YORK)
    assert result > now
    assert result.astimezone(NEW_YORK).time() == time(1, 30)
    assert result - now <= timedelta(hours=26)
    local = result.astimezone(NEW_YORK)
    assert local.utcoffset() in (timedelta(hours=-4), timedelta(hours=-5))
    assert local.timestamp() == result.timestamp()


def test_fall_back_before_first_pass_picks_the_first_0130() -> None:
    now = _utc(2026, 11, 1, 4, 0)  # 00:00 EDT
    assert next_local_time(now, time(1, 30), NEW_YORK) == _utc(2026, 11, 1, 5, 30)


def test_fall_back_second_0130_is_the_first_instant_after_now() -> None:
    now = _utc(2026, 11, 1, 5, 45)  # 01:45 EDT
    assert next_local_time(now, time(1, 30), NEW_YORK) == _utc(2026, 11, 1, 6, 30)


_ZONES = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=0)),
        timezone(timedelta(hours=8)),
        timezone(timedelta(hours=-5, minutes=-30)),
    ]
    + [ZoneInfo(name) for name in ("Asia/Shanghai", "America/New_York", "Europe/Berlin", "UTC")]
)


@settings(max_examples=2000, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=_ZONES
    )
    | st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31))
)
def test_instants_are_written_in_utc_as_isoformat_writes_them(moment: datetime) -> None:
    """``iso_z`` writes what ``isoformat()`` writes of the instant in UTC, ``Z`` for the
    offset: seconds, or six digits of microseconds when there are some; a naive moment
    is local time."""
    expected = moment.astimezone(UTC).isoformat()
    assert expected.endswith("+00:00")
    assert iso_z(moment) == expected[:-6] + "Z"


def test_instants_keep_their_digits() -> None:
    assert iso_z(datetime(2026, 3, 1, tzinfo=UTC)) == "2026-03-01T00:00:00Z"
    assert iso_z(datetime(2026, 3, 1, 0, 0, 0, 9, tzinfo=UTC)) == "2026-03-01T00:00:00.000009Z"
    shanghai = datetime(2026, 3, 1, 8, 0, 0, 146000, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert iso_z(shanghai) == "2026-03-01T00:00:00.146000Z"
