"""Reading Segment messages from JSON-lines files, reporting each bad line by number.

Events are applied in timestamp order, file order among equal timestamps, after
dropping duplicates (a ``messageId`` seen before) in file order. Event logs are
nearly always written in time order, so a cheap first pass checks that; a sorted
file is then parsed and yielded one line at a time, in constant memory. Any other
file is parsed whole and sorted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from engine.errors import InvalidMessage
from engine.events import Event, parse_message


def _timestamp_of(line: bytes) -> datetime | bool | None:
    """The line's timestamp for the order check: a datetime, None when the line is
    not a usable message (it will be reported later), or False when its timestamp
    is in a form only the full parser understands (then the file is sorted whole)."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(raw, dict) or "timestamp" not in raw:
        return None
    text = raw["timestamp"]
    if not isinstance(text, str):
        return False
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return False
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass
class EventFile:
    """A file of events. Iterate it once to get the valid events in time order; the
    counts and ``errors`` (``FILE:LINE: message``) are complete once iteration ends."""

    path: Path
    errors: list[str] = field(default_factory=list)
    duplicates: int = 0
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None

    def in_time_order(self) -> bool:
        """Whether the file's timestamps never go backwards (a cheap first pass)."""
        previous: datetime | None = None
        with self.path.open("rb") as handle:
            for line in handle:
                moment = _timestamp_of(line)
                if moment is None:
                    continue
                if moment is False:
                    return False
                assert isinstance(moment, datetime)
                if previous is not None and moment < previous:
                    return False
                previous = moment
        return True

    def _parsed(self) -> Iterator[Event]:
        seen: set[str] = set()
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    raw = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    self.errors.append(f"{self.path}:{number}: invalid JSON: {exc}")
                    continue
                try:
                    event = parse_message(raw, default_message_id=f"{self.path.name}:{number}")
                except InvalidMessage as exc:
                    self.errors.append(f"{self.path}:{number}: {exc}")
                    continue
                if event.message_id in seen:
                    self.duplicates += 1
                    continue
                seen.add(event.message_id)
                yield event

    def __iter__(self) -> Iterator[Event]:
        """Valid, distinct events in time order. Raises OSError if the file cannot be read."""
        events: Iterator[Event]
        if self.in_time_order():
            events = self._parsed()
        else:
            events = iter(sorted(self._parsed(), key=lambda e: e.timestamp))  # stable
        for event in events:
            self.count += 1
            if self.first is None:
                self.first = event.timestamp
            self.last = event.timestamp
            yield event


def read_events(path: Path) -> list[Event]:
    """Every valid, distinct event of ``path`` in time order (for tests and small files)."""
    return list(EventFile(Path(path)))
