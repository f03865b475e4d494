"""Reading Segment messages from JSON-lines files, reporting each bad line by number."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson

from engine.errors import InvalidMessage
from engine.events import Event, parse_message


@dataclass
class EventFile:
    """The valid events of a file in time order, plus what was wrong or repeated."""

    events: list[Event] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duplicates: int = 0


def read_events(path: Path) -> EventFile:
    """Parse every line; bad lines become ``FILE:LINE: message`` and never stop the rest.

    Duplicates (a ``messageId`` seen before) are dropped in file order, then the
    events are sorted by timestamp, keeping file order among equal timestamps.
    Raises OSError when the file cannot be read at all.
    """
    result = EventFile()
    seen: set[str] = set()
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                result.errors.append(f"{path}:{number}: invalid JSON: {exc}")
                continue
            try:
                event = parse_message(raw, default_message_id=f"{path.name}:{number}")
            except InvalidMessage as exc:
                result.errors.append(f"{path}:{number}: {exc}")
                continue
            if event.message_id in seen:
                result.duplicates += 1
                continue
            seen.add(event.message_id)
            result.events.append(event)
    result.events.sort(key=lambda e: e.timestamp)  # stable: file order among equals
    return result
