"""Reading Segment messages from JSON-lines files, reporting each bad line by number.

Events are applied in timestamp order, file order among equal timestamps, after
dropping duplicates (a ``messageId`` seen before) in file order.

Event logs are nearly always written in time order, so a cheap first pass checks
that (it stops at the first timestamp that goes backwards): a block of lines whose
timestamps are all written alike (UTC, ``Z``, the same length) is checked by comparing
their text, found by one regular expression, and anything else line by line through
the JSON decoder. A sorted file is then
parsed and yielded one line at a time, in constant memory besides the message ids
seen (for duplicates). Any other file is sorted without holding its events: one
pass validates every line in file order (errors and duplicates are decided there,
as for a sorted file) and keeps only a sort key per valid event and a byte offset
per line; the events are then read back from their offsets in time order. That is
about 50 bytes per event instead of the parsed event.
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from msgspec import DecodeError

from engine.errors import InvalidMessage
from engine.event_lines import decode_line, identity_of, plain_line
from engine.events import Event, parse_message
from engine.forked import Forked, can_fork, usable_cores

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The message types that link ids.
IDENTITY_TYPES = frozenset({"identify", "alias"})
#: Low bits of a sort key: the event's line number, so equal times keep file order.
INDEX_BITS = 32
INDEX_MASK = (1 << INDEX_BITS) - 1


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _timestamp_of(line: bytes) -> datetime | bool | None:
    """The line's timestamp for the order check: a datetime, None when the line is
    not a usable message (it will be reported later), or False when its timestamp
    is in a form only the full parser understands (then the file is sorted whole)."""
    try:
        raw = decode_line(line)
    except DecodeError:
        return None
    if not isinstance(raw, dict) or "timestamp" not in raw:
        return None
    text = raw["timestamp"]
    if not isinstance(text, str):
        return False
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        return False


#: Every mention of ``timestamp``; when it is a ``"timestamp": "<UTC time with Z>"``
#: pair (top-level or nested), the time's text is captured, else nothing is.
_TIMESTAMP_MENTION = re.compile(
    rb'timestamp(?:(?<="timestamp)" *: *"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z)")?'
)
#: Bytes the order check reads at a time.
ORDER_BLOCK = 1 << 20
#: How far back from where the order check by blocks stopped the last line's time is
#: looked for.
LOOK_BACK = 1 << 20
#: Files of this size or more have a first pass shared with a helper process (the
#: fork and the handing back cost more than they save on smaller ones).
HELPER_FROM_BYTES = 4 << 20
#: The part of such a file the helper takes: a little less than half, as it hands its
#: results back besides.
HELPER_SHARE = 0.45


class Checked(NamedTuple):
    """What the order check by blocks found in a part of a file: its first and last time
    (``Z`` text of one length; empty when none), and where it stopped being sure the
    part is in order (the start of a block of lines; -1 when it never did), ``last``
    then being the last time before there."""

    first: bytes
    last: bytes
    unsure_from: int = -1


def _block_times(
    handle: BinaryIO,
    stop: int | None = None,
    seen: Callable[[bytes], None] | None = None,
) -> Checked:
    """The order check of the lines from where ``handle`` is to byte ``stop`` (or the
    end), a block of whole lines at a time, without decoding them. Where it cannot tell
    that the lines are in order, the lines must be decoded from there on, which gives
    the exact answer. ``seen`` sees each block found in order.

    A block qualifies when it has no backslash (so no escapes: every quote starts or
    ends a string), every mention of ``timestamp`` in it is a ``"timestamp": "..."``
    pair with a UTC time in ``Z`` form, and those times all have the same length, so
    that their text sorts as their instants do. Each line's own timestamp is then one
    of the times found, in file order; the others (nested objects, lines that are no
    valid message) can only add steps to check, so times that never go back mean the
    lines' own times never go back either.
    """
    first = previous = b""
    at = handle.tell()
    for lines in _line_blocks(handle, stop):
        times = _TIMESTAMP_MENTION.findall(lines) if b"\\" not in lines else [b""]
        if times:
            if b"" in times:  # a mention that is no such pair (or an escape)
                return Checked(first, previous, at)
            if previous:
                times.insert(0, previous)
            if len(set(map(len, times))) != 1 or times != sorted(times):
                return Checked(first, previous, at)
            first = first or times[0]
            previous = times[-1]
        if seen is not None:
            seen(lines)
        at += len(lines)
    return Checked(first, previous)


def _in_order(front: Checked, back: Checked) -> bool:
    """Whether two parts of a file, one after the other, are surely in time order together."""
    if front.unsure_from >= 0 or back.unsure_from >= 0:
        return False
    last, first = front.last, back.first
    return not last or not first or (len(last) == len(first) and last <= first)


def _line_blocks(handle: BinaryIO, stop: int | None = None) -> Iterator[bytes]:
    """The file from where ``handle`` is to byte ``stop`` (a line's start, or the end) in
    blocks of about ORDER_BLOCK bytes, each of whole lines (the last line may lack its
    newline)."""
    rest = b""
    left = -1 if stop is None else stop - handle.tell()
    while True:
        block = handle.read(ORDER_BLOCK if left < 0 else min(ORDER_BLOCK, left))
        if left >= 0:
            left -= len(block)
        data = rest + block
        if not block:
            if data:
                yield data
            return
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            yield data[:cut]


def micros(moment: datetime) -> int:
    """Microseconds since the epoch."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(count: int) -> datetime:
    """The moment ``count`` microseconds after the epoch (what :func:`micros` gives)."""
    return EPOCH + timedelta(microseconds=count)


def sort_key(moment: datetime, number: int) -> int:
    """One int that orders events by instant, then by line number."""
    if number > INDEX_MASK:
        raise ValueError(f"line {number}: too many lines to sort (at most {INDEX_MASK})")
    return (micros(moment) << INDEX_BITS) | number


#: (count, duplicates, errors, first, last) of a file read.
Tally = tuple[int, int, list[str], datetime | None, datetime | None]


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

    def tally(self) -> Tally:
        """What reading the file found (counts, errors, first and last times), to hand to
        another process's :class:`EventFile` of the same path (:meth:`adopt`)."""
        return (self.count, self.duplicates, self.errors, self.first, self.last)

    def adopt(self, tally: Tally) -> None:
        """Take what another process found reading this file (:meth:`tally`)."""
        self.count, self.duplicates, self.errors, self.first, self.last = tally

    def in_time_order(self, links: Callable[[Event], None] | None = None) -> bool:
        """Whether the file's timestamps never go backwards (a cheap first pass, the back
        part of a large file checked by a helper process meanwhile). When they do,
        ``links`` has seen every identity event of the file that may link two ids (some
        perhaps twice), looked for on the way: few lines can link, so it costs little."""
        start = self.helper_start()
        helper = None
        if start is not None:
            helper = Forked(partial(_back_times, self.path, start, links is not None))
        seen = None if links is None else partial(_identity_lines, links=links)
        with self.path.open("rb") as handle:
            front = _block_times(handle, start, seen)
        sure = front.unsure_from < 0
        found: list[Link] = []  # the links in the helper's part
        if helper is not None:
            if sure:
                back, found = helper.result()
                sure = _in_order(front, Checked(*back))
            else:
                helper.cancel()
        if sure:
            if links is not None:
                for link in found:
                    links(link_event(link))
            return True
        # Decoded from where the blocks stopped being sure (the helper's part, if not its).
        resume = front.unsure_from if front.unsure_from >= 0 else start or 0
        in_order = self._lines_in_order(*self._last_time_before(resume))
        if in_order and links is not None:
            self._scan_links(links)
        return in_order

    def helper_start(self) -> int | None:
        """Where a helper process takes over a pass over the file: the start of the line
        at or after where its HELPER_SHARE begins; None when the file is too small to
        share, or there is no second core."""
        size = self.path.stat().st_size
        if size < HELPER_FROM_BYTES or usable_cores() < 2 or not can_fork():
            return None
        with self.path.open("rb") as handle:
            handle.seek(int(size * (1 - HELPER_SHARE)))
            handle.readline()
            start = handle.tell()
        return start if start < size else None

    def _last_time_before(self, offset: int) -> tuple[int, datetime | None]:
        """Where to decode lines from, and the time they must not go back from, for lines
        known to be in order up to byte ``offset`` (a line's start): the time of the last
        line before it that is a message with a plain time. From the start when no such
        line is found near enough (the blocks' own times may be nested ones)."""
        with self.path.open("rb") as handle:
            low = max(0, offset - LOOK_BACK)
            handle.seek(low)
            lines = handle.read(offset - low).split(b"\n")
        for line in reversed(lines[1:] if low else lines):
            moment = _timestamp_of(line)
            if isinstance(moment, datetime):
                return offset, moment
            if moment is False:
                break
        return 0, None

    def _lines_in_order(self, start: int = 0, previous: datetime | None = None) -> bool:
        """:meth:`in_time_order`, decoding every line from byte ``start`` on (the lines
        before it in order, their last time ``previous``)."""
        with self.path.open("rb") as handle:
            handle.seek(start)
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

    def parse_line(self, line: bytes, number: int) -> Event | None:
        """Line ``number``'s event, or None (blank, or reported as an error)."""
        event = plain_line(line)
        if event is not None:
            return event
        try:
            raw: Any = decode_line(line)
        except DecodeError as exc:
            if line.strip():
                self.errors.append(f"{self.path}:{number}: invalid JSON: {exc}")
            return None
        # A line's own messageId makes the default unused: most lines have one.
        has_id = type(raw) is dict and raw.get("messageId") is not None
        default_id = None if has_id else f"{self.path.name}:{number}"
        try:
            return parse_message(raw, default_message_id=default_id)
        except InvalidMessage as exc:
            self.errors.append(f"{self.path}:{number}: {exc}")
            return None

    def distinct(
        self,
        ends: array[int] | None = None,
        part: tuple[int, int, int | None] = (0, 1, None),
        seen: set[str] | None = None,
    ) -> Iterator[tuple[int, bytes, Event]]:
        """(line number, line, event) of each valid, distinct event, in file order. With
        ``ends``, where every line ends is appended to it (``ends[n]`` for line n).
        ``part`` is (the byte to start at, its line's number, the byte to stop at, which
        needs ``ends``); ``seen`` the message ids met so far, added to."""
        start, first, stop = part
        seen = set() if seen is None else seen
        offset = start
        with self.path.open("rb") as handle:
            handle.seek(start)
            for number, line in enumerate(handle, start=first):
                if ends is not None:
                    if offset == stop:
                        return
                    offset += len(line)
                    ends.append(offset)
                event = self.parse_line(line, number)
                if event is None:
                    continue
                if event.message_id in seen:
                    self.duplicates += 1
                    continue
                seen.add(event.message_id)
                yield number, line, event

    def _sorted(self) -> Iterator[tuple[int, bytes, Event]]:
        """(line number, line, event) of the distinct events in time order, holding a sort
        key per event and an offset per line."""
        ends = array("q", [0])
        keys = [sort_key(event.timestamp, number) for number, _, event in self.distinct(ends)]
        keys.sort()
        with self.path.open("rb") as handle:
            fd = handle.fileno()
            for first in range(0, len(keys), READ_BATCH):
                numbers = [key & INDEX_MASK for key in keys[first : first + READ_BATCH]]
                lines = read_lines(fd, ends, numbers)
                for number in numbers:
                    line = lines[number]
                    event = self.parse_line(line, number)
                    if event is not None:  # None only if the file changed meanwhile
                        yield number, line, event

    def records(self) -> Iterator[tuple[int, bytes, Event]]:
        """(line number, line, event) of the valid, distinct events in time order, as
        iterating the file gives the events (and keeps its counts)."""
        numbered = self.distinct() if self.in_time_order() else self._sorted()
        for record in numbered:
            timestamp = record[2].timestamp
            self.count += 1
            if self.first is None:
                self.first = timestamp
            self.last = timestamp
            yield record

    def _scan_links(self, links: Callable[[Event], None]) -> None:
        """Hand ``links`` the identity events that may link two ids (see
        :func:`_identity_lines`), reading the file once without keeping or reporting
        anything."""
        with self.path.open("rb") as handle:
            for lines in _line_blocks(handle):
                _identity_lines(lines, links)

    def __iter__(self) -> Iterator[Event]:
        """Valid, distinct events in time order. Raises OSError if the file cannot be read."""
        for _, _, event in self.records():
            yield event


#: Events read back together when a file is sorted; neighbours in time are mostly
#: neighbours in the file, so their lines are read in a few large reads.
READ_BATCH = 4096
#: Lines closer than this in the file are read in one go, the bytes between included.
READ_GAP = 1 << 16


def read_lines(fd: int, ends: array[int], numbers: list[int]) -> dict[int, bytes]:
    """The lines ``numbers`` of the file, by number, in as few reads as their places allow."""
    lines: dict[int, bytes] = {}
    ordered = sorted(numbers)
    group = [ordered[0]]
    for number in [*ordered[1:], None]:
        if number is not None and ends[number - 1] - ends[group[-1]] < READ_GAP:
            group.append(number)
            continue
        start = ends[group[0] - 1]
        chunk = os.pread(fd, ends[group[-1]] - start, start)
        for member in group:
            lines[member] = chunk[ends[member - 1] - start : ends[member] - start]
        if number is not None:
            group = [number]
    return lines


#: What a line that links two ids must contain: the second id's key (an identity event
#: with a user id alone links nothing), or an escape that may spell it.
_LINKING_NEEDLES = (b"anonymousId", b"previousId", b"\\")


def _identity_lines(chunk: bytes, links: Callable[[Event], None]) -> None:
    """Hand ``links`` the identity events among the whole lines of ``chunk`` that may link
    two ids (those with a user id alone link nothing, and are mostly not even decoded).
    Only the ids matter: where they are text, nothing else of a line is decoded or
    validated (a link too many costs the split of users its balance, never its
    correctness); ids of any other kind are read as the parser reads them (a number is
    an id too)."""
    spans: set[tuple[int, int]] = set()
    for needle in _LINKING_NEEDLES:
        at = chunk.find(needle)
        while at >= 0:
            start = chunk.rfind(b"\n", 0, at) + 1
            end = chunk.find(b"\n", at)
            if end < 0:
                end = len(chunk)
            spans.add((start, end))
            at = chunk.find(needle, end)
    for start, end in spans:
        line = chunk[start:end]
        if b"identify" not in line and b"alias" not in line and b"\\" not in line:
            continue  # names no identity type, nor has an escape that could spell one
        found = identity_of(line)  # the ids alone: an identity line is mostly traits
        if found is not None:
            kind, *ids = found
            if kind != "identify" and kind != "alias":
                continue
            if all(value is None or type(value) is str for value in ids):
                links(link_event((kind, *ids)))
                continue
        try:
            raw = decode_line(line)
        except DecodeError:
            continue
        kind = raw.get("type") if type(raw) is dict else None
        if kind != "identify" and kind != "alias":
            continue
        try:
            event = parse_message(raw, default_message_id="-")
        except InvalidMessage:
            continue
        links(event)


#: What an identity event links: (type, userId, anonymousId, previousId).
Link = tuple[str, str | None, str | None, str | None]


def link_of(event: Event) -> Link:
    """What ``event`` (an identity event) links, to hand to another process."""
    return (event.type, event.user_id, event.anonymous_id, event.previous_id)


def link_event(link: Link) -> Event:
    """An event that links what ``link`` says, for whoever learns links (no more)."""
    kind, user_id, anonymous_id, previous_id = link
    return Event(kind, None, "", user_id, anonymous_id, EPOCH, {}, {}, previous_id)


def _back_times(
    path: Path, start: int, want_links: bool
) -> tuple[tuple[bytes, bytes, int], list[Link]]:
    """The order check of the file from byte ``start`` (a :class:`Checked`, as a plain
    tuple for marshal) and the links found there (when wanted; only complete when the
    check is sure): a helper process's share of the check."""
    found: list[Link] = []
    seen = partial(_identity_lines, links=lambda event: found.append(link_of(event)))
    with path.open("rb") as handle:
        handle.seek(start)
        checked = _block_times(handle, None, seen if want_links else None)
    return tuple(checked), found  # type: ignore[return-value]


def read_events(path: Path) -> list[Event]:
    """Every valid, distinct event of ``path`` in time order (for tests and small files)."""
    return list(EventFile(Path(path)))
