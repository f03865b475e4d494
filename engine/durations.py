"""Durations (``1h30m``, ``7d``) and times of day (``"10:00"``) as journey files write them,
and the one way the engine writes an instant (ISO-8601 UTC with ``Z``)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache

import orjson

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")
_TIME_OF_DAY = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")


def parse_duration(text: object) -> timedelta:
    """Parse ``<integer><unit>`` repeated (units s m h d w) into a positive timedelta.

    Raises ValueError with a message fit for the journey author.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration is written like '45m', '1h30m' or '7d', not {text!r}")
    compact = text.strip()
    if not _DURATION.fullmatch(compact):
        raise ValueError(
            f"invalid duration {text!r}: use <integer><unit> with units s m h d w, "
            "e.g. '45m', '1h30m', '7d'"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(compact))
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: a duration must be positive")
    return timedelta(seconds=seconds)


def parse_time_of_day(text: object) -> time:
    """Parse ``HH:MM`` (or ``HH:MM:SS``), 24-hour clock."""
    if not isinstance(text, str) or not _TIME_OF_DAY.fullmatch(text.strip()):
        raise ValueError(f'invalid time of day {text!r}: write it quoted as "HH:MM", e.g. "10:00"')
    hour, minute, second = _TIME_OF_DAY.fullmatch(text.strip()).groups()  # type: ignore[union-attr]
    return time(int(hour), int(minute), int(second or 0))


def next_local_time(now: datetime, at: time, zone: tzinfo) -> datetime:
    """The first instant strictly after ``now`` whose wall clock in ``zone`` reads ``at``.

    A wall time that does not exist that day (a DST gap) resolves as zoneinfo does:
    the instant the clock would show had it not jumped.
    """
    local_date = now.astimezone(zone).date()
    for candidate in _local_times(local_date, at, zone, now.tzinfo):
        if candidate > now:
            return candidate
    raise AssertionError("unreachable: a wall time recurs within two days")


@lru_cache(maxsize=4096)
def _local_times(
    local_date: date, at: time, zone: tzinfo, out: tzinfo | None
) -> tuple[datetime, ...]:
    """The instants whose wall clock in ``zone`` reads ``at`` on ``local_date`` and the
    two days after, in ``out``: day by day, each day's in order. The same for every
    ``now`` of that local day, so they are worked out once."""
    found: list[datetime] = []
    for day in (local_date, local_date + timedelta(days=1), local_date + timedelta(days=2)):
        first = datetime.combine(day, at, tzinfo=zone)
        if first.utcoffset() == first.replace(fold=1).utcoffset():
            # The usual day: the wall time occurs exactly once (neither gap nor overlap).
            found.append(first.astimezone(out))
            continue
        # A wall time that occurs twice (DST fall-back) has two instants: fold 0 and 1.
        # Compare as instants: same-tzinfo comparisons would compare wall clocks only.
        # A wall time skipped by DST (a gap) exists in neither fold; then fold 0 stands for
        # it, the instant the clock would show had it not jumped.
        local = [datetime.combine(day, at, tzinfo=zone).replace(fold=fold) for fold in (0, 1)]
        real = [t for t in local if t.astimezone(UTC).astimezone(zone).time() == at] or local[:1]
        found.extend(sorted({t.astimezone(out) for t in real}))
    return tuple(found)


def iso_z(moment: datetime) -> str:
    """ISO-8601 in UTC with ``Z``: seconds, or all six digits of microseconds when there
    are some (what ``isoformat()`` writes in UTC, ``Z`` for ``+00:00``). A naive moment is
    taken as local time, as ``astimezone`` takes it."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # orjson writes a datetime so, in a quarter of the time isoformat() takes.
    return orjson.dumps(moment, option=orjson.OPT_UTC_Z)[1:-1].decode()
