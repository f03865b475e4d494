"""An event file read for several simulation workers: each wanted event with its key.

:func:`routed` gives what :meth:`EventFile.records` gives (the valid, distinct events
in time order, and the file's counts), less what no journey acts on, each with the
id of the key it belongs to, for a :class:`Router` to place on a worker. An unsorted
file is read twice: the first pass validates every line, finds the links and asks
the router about every event; the second reads back only the wanted lines, in time
order, without decoding them.

No event can be simulated before the first pass ends (the file is not in order, or
the links are not all known), so in a large file a helper process takes the back
half of that pass meanwhile: it hands back its lines' ends, each valid event's
number, time and message id, the key of each wanted one, its links and its errors.
This process reads the front half, then takes the back half's results in file
order, as if it had read them itself: a message id already met in the front half
makes a duplicate there too.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Protocol

from engine.event_files import (
    EPOCH,
    IDENTITY_TYPES,
    INDEX_BITS,
    INDEX_MASK,
    READ_BATCH,
    EventFile,
    Link,
    link_event,
    link_of,
    micros,
    read_lines,
    sort_key,
)
from engine.events import Event
from engine.forked import Forked
from engine.user_shards import own_key

_MICROSECOND = timedelta(microseconds=1)
#: (line number, line, key id, time in microseconds since the epoch).
Routed = tuple[int, bytes, int, int]


class Router(Protocol):
    """Who places the events on workers, as the file is read."""

    def learn(self, event: Event) -> None:
        """Join the ids an identity event links: every one of the file, before the first
        event is yielded."""

    def start(self) -> None:
        """Called once before :meth:`wants` is first asked (it may wait for what to want)."""

    def wants(self, event: Event) -> bool:
        """Whether ``event`` goes to a worker. The same for the same event anywhere: a
        helper process asks it too."""

    def key_id(self, key: str, events: int) -> int:
        """The number of a key (:func:`~engine.user_shards.own_key`) that ``events`` more
        wanted events belong to."""

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
                yield number, line, key_id(own_key(event), 1), micros(event.timestamp)
        return
    ends, keys, marks = _first_pass(file, router)
    router.placed()
    if not keys:
        return
    keys.sort()
    file.count = len(keys)
    file.first = EPOCH + (keys[0] >> INDEX_BITS) * _MICROSECOND
    file.last = EPOCH + (keys[-1] >> INDEX_BITS) * _MICROSECOND
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


def _first_pass(file: EventFile, router: Router) -> tuple[array[int], list[int], array[int]]:
    """(where each line ends, the sort key of each valid distinct event, the key id of
    each line's event by line number - 1, -1 where none is wanted)."""
    ends = array("q", [0])
    keys: list[int] = []
    marks = array("i")
    start = file.helper_start()
    helper = None if start is None else Forked(partial(_back_pass, file.path, start, router))
    seen: set[str] = set()
    wants, key_id, learn = router.wants, router.key_id, router.learn
    for number, _, event in file.distinct(ends, (0, 1, start), seen):
        keys.append(sort_key(event.timestamp, number))
        if event.type in IDENTITY_TYPES:
            learn(event)
        if len(marks) < number - 1:
            marks.extend(repeat(-1, number - 1 - len(marks)))
        marks.append(key_id(own_key(event), 1) if wants(event) else -1)
    if helper is not None:
        _take_back(file, router, helper.result(), seen, (ends, keys, marks))
    return ends, keys, marks


#: A helper's share of the first pass: where its lines end and the key id of each one's
#: event, or -1 (arrays' bytes), the sort keys and message ids of its valid distinct
#: events, the keys it numbered with how many wanted events each has, its links,
#: errors and duplicates.
BackPass = tuple[bytes, bytes, list[int], list[str], list[str], bytes, list[Link], list[str], int]


def _back_pass(path: Path, start: int, router: Router) -> BackPass:
    """The first pass over the lines from byte ``start`` (a helper process's share)."""
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
    for number, _, event in file.distinct(ends, (start, first, None)):
        keys.append(sort_key(event.timestamp, number))
        message_ids.append(event.message_id)
        if event.type in IDENTITY_TYPES:
            links.append(link_of(event))
        if len(marks) < number - first:
            marks.extend(repeat(-1, number - first - len(marks)))
        if wants(event):
            mark = numbered.setdefault(own_key(event), len(numbered))
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


def _take_back(
    file: EventFile,
    router: Router,
    back: BackPass,
    seen: set[str],
    front: tuple[array[int], list[int], array[int]],
) -> None:
    """Add a helper's share of the first pass to this process's: as if it had read those
    lines itself after its own (a message id it met makes a duplicate of a later one)."""
    ends, keys, marks = front
    back_ends, back_marks, back_keys, message_ids, owners, weights, links, errors, dupes = back
    file.errors.extend(errors)
    file.duplicates += dupes
    for link in links:
        router.learn(link_event(link))
    counts = array("q")
    counts.frombytes(weights)
    ids = array("i", map(router.key_id, owners, counts))  # the helper's key ids to ours
    lines = array("i")
    lines.frombytes(back_marks)
    marks.extend(repeat(-1, len(ends) - 1 - len(marks)))  # to the helper's first line
    marks.extend(ids[mark] if mark >= 0 else -1 for mark in lines)
    ends.frombytes(back_ends)
    if seen.isdisjoint(message_ids):  # nearly always: done in C
        keys.extend(back_keys)
        return
    for key, message_id in zip(back_keys, message_ids, strict=True):
        if message_id in seen:  # the first copy is in the front part
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
