"""An event file read for several simulation workers: each wanted event with its key.

:func:`routed` gives what :meth:`EventFile.records` gives (the valid, distinct events
in time order, and the file's counts), less what no journey acts on, each with the
id of the key it belongs to, for a :class:`Router` to place on a worker. An unsorted
file is read twice: the first pass validates every line, finds the links and asks
the router about every event; the second reads back only the wanted lines, in time
order, without decoding them.

No event can be simulated before the first pass ends (the file is not in order, or
the links are not all known), so in a large file a helper process takes the back
half of that pass meanwhile. Each part is read alike (:func:`_read_part`: its lines'
ends, its events' sort keys and message ids, the key of each wanted one, its links and
its errors) and taken in file order (:func:`_take`), as if one process had read them
all: a message id already met in the front part makes a duplicate in the back one.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Protocol

from engine.event_files import (
    IDENTITY_TYPES,
    INDEX_BITS,
    INDEX_MASK,
    READ_BATCH,
    EventFile,
    Link,
    from_micros,
    link_event,
    link_of,
    micros,
    read_lines,
    sort_key,
)
from engine.events import Event
from engine.forked import Forked
from engine.identity import routing_key

#: (line number, line, key id, time in microseconds since the epoch).
Routed = tuple[int, bytes, int, int]


class Router(Protocol):
    """Who places the events on workers, as the file is read."""

    def learn(self, event: Event) -> None:
        """Join the ids an identity event links: every one of the file that may link two
        ids (others may come too), before the first event is yielded."""

    def start(self) -> None:
        """Called once before :meth:`wants` is first asked (it may wait for what to want)."""

    def wants(self, event: Event) -> bool:
        """Whether ``event`` goes to a worker. The same for the same event anywhere: a
        helper process asks it too."""

    def key_id(self, key: str, events: int) -> int:
        """The number of a key (an event's :func:`~engine.identity.routing_key`) that
        ``events`` more wanted events belong to."""

    def placed(self) -> None:
        """Every event of an unsorted file has been asked about; none is yielded yet."""


def routed(file: EventFile, router: Router) -> Iterator[Routed]:
    """The wanted events of ``file`` in time order, each with its key's id; the file's
    counts cover every event, as :meth:`EventFile.records` keeps them."""
    in_order = file.in_time_order(router.learn)
    router.start()
    if in_order:
        wants, key_id = router.wants, router.key_id
        for number, line, event in file.distinct():
            file.count += 1
            if file.first is None:
                file.first = event.timestamp
            file.last = event.timestamp
            if wants(event):
                key = routing_key(event.user_id, event.anonymous_id)
                yield number, line, key_id(key, 1), micros(event.timestamp)
        return
    ends, keys, marks = _first_pass(file, router)
    router.placed()
    if not keys:
        return
    keys.sort()
    file.count = len(keys)
    file.first = from_micros(keys[0] >> INDEX_BITS)
    file.last = from_micros(keys[-1] >> INDEX_BITS)
    with file.path.open("rb") as handle:
        fd = handle.fileno()
        for first in range(0, len(keys), READ_BATCH):
            batch = [
                (key & INDEX_MASK, key >> INDEX_BITS)
                for key in keys[first : first + READ_BATCH]
                if marks[(key & INDEX_MASK) - 1] >= 0
            ]
            if not batch:
                continue
            lines = read_lines(fd, ends, [number for number, _ in batch])
            for number, moment in batch:
                yield number, lines[number], marks[number - 1], moment


#: Where each line ends, the sort keys, the key id of each line's event (see below).
FirstPass = tuple["array[int]", list[int], "array[int]"]


def _first_pass(file: EventFile, router: Router) -> FirstPass:
    """(where each line ends, the sort key of each valid distinct event, the key id of
    each line's event by line number - 1, -1 where none is wanted)."""
    start = file.helper_start()
    helper = None if start is None else Forked(partial(_read_part, file.path, start, router))
    seen: set[str] = set()  # the front part's message ids
    front = _read_part(file.path, 0, router, start, seen)
    first_pass: FirstPass = array("q", [0]), [], array("i")
    _take(file, router, front, None, first_pass)
    if helper is not None:
        _take(file, router, helper.result(), seen, first_pass)
    return first_pass


#: A part of the first pass: where its lines end and the key id of each one's event, or
#: -1 (arrays' bytes), the sort keys and message ids of its valid distinct events, the
#: keys it numbered with how many wanted events each has, its links, errors and
#: duplicates. Plain values, as a helper process hands its part back through marshal.
Part = tuple[bytes, bytes, list[int], list[str], list[str], bytes, list[Link], list[str], int]


def _read_part(
    path: Path, start: int, router: Router, stop: int | None = None, seen: set[str] | None = None
) -> Part:
    """The first pass over the lines from byte ``start`` to ``stop`` (the end), with the
    message ids met added to ``seen``."""
    file = EventFile(path)
    first = 1 + _lines_before(path, start)
    ends = array("q")
    marks = array("i")
    keys: list[int] = []
    message_ids: list[str] = []
    numbered: dict[str, int] = {}
    weights = array("q")
    links: list[Link] = []
    wants = router.wants
    for number, _, event in file.distinct(ends, (start, first, stop), seen):
        keys.append(sort_key(event.timestamp, number))
        message_ids.append(event.message_id)
        if event.type in IDENTITY_TYPES:
            links.append(link_of(event))
        if len(marks) < number - first:
            marks.extend(repeat(-1, number - first - len(marks)))
        if wants(event):
            key = routing_key(event.user_id, event.anonymous_id)
            mark = numbered.setdefault(key, len(numbered))
            if mark < len(weights):
                weights[mark] += 1
            else:
                weights.append(1)
            marks.append(mark)
        else:
            marks.append(-1)
    marks.extend(repeat(-1, len(ends) - len(marks)))  # blank or bad lines at the end
    return (
        ends.tobytes(),
        marks.tobytes(),
        keys,
        message_ids,
        list(numbered),
        weights.tobytes(),
        links,
        file.errors,
        file.duplicates,
    )


def _take(
    file: EventFile,
    router: Router,
    part: Part,
    before: set[str] | None,
    first_pass: FirstPass,
) -> None:
    """Add a part of the first pass to what the parts before it gave, as if one process
    had read them all in file order: a message id met ``before`` makes a duplicate."""
    ends, keys, marks = first_pass
    part_ends, part_marks, part_keys, message_ids, owners, weights, links, errors, dupes = part
    file.errors.extend(errors)
    file.duplicates += dupes
    for link in links:
        router.learn(link_event(link))
    counts = array("q")
    counts.frombytes(weights)
    ids = array("i", map(router.key_id, owners, counts))  # the part's key ids to the router's
    lines = array("i")
    lines.frombytes(part_marks)
    marks.extend(ids[mark] if mark >= 0 else -1 for mark in lines)
    ends.frombytes(part_ends)
    if before is None or before.isdisjoint(message_ids):  # nearly always: done in C
        keys.extend(part_keys)
        return
    for key, message_id in zip(part_keys, message_ids, strict=True):
        if message_id in before:  # the first copy is in a part before
            file.duplicates += 1
            marks[(key & INDEX_MASK) - 1] = -1
        else:
            keys.append(key)


def _lines_before(path: Path, start: int) -> int:
    """How many lines end before byte ``start`` (a line's start)."""
    count = 0
    with path.open("rb") as handle:
        left = start
        while left > 0:
            block = handle.read(min(left, 1 << 20))
            if not block:
                break
            count += block.count(b"\n")
            left -= len(block)
    return count
