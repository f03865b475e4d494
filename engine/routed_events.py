"""An event file read for several simulation workers: each wanted event with its key.

:func:`routed` gives what :meth:`EventFile.records` gives (the valid, distinct events
in time order, and the file's counts), less what no journey acts on, each with the
id of the key it belongs to, for a :class:`Router` to place on a worker. An unsorted
file is read twice: the first pass validates every line, finds the links and asks
the router about every event, and spools the wanted events decoded
(:mod:`engine.event_spool`); the second reads them back in time order. A sorted file
is read once. Either way each event comes as :func:`~engine.event_lines.event_bytes`,
which the worker it goes to reads back faster than its line (or as its line, where it
has no such form).

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
from contextlib import nullcontext
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
from engine.event_lines import event_bytes, is_event_bytes
from engine.event_spool import Spool
from engine.events import Event
from engine.forked import Forked
from engine.identity import routing_key

#: (line number, the event's bytes or else its line, key id, time in microseconds since
#: the epoch, whether the bytes are the event's: see :func:`~engine.event_lines.event_bytes`).
Routed = tuple[int, bytes, int, int, bool]


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
                data = event_bytes(event)
                packed = data is not None
                yield number, data or line, key_id(key, 1), micros(event.timestamp), packed
        return
    spool, (ends, keys, marks) = _first_pass(file, router)
    try:
        router.placed()
        if not keys:
            return
        keys.sort()
        file.count = len(keys)
        file.first = from_micros(keys[0] >> INDEX_BITS)
        file.last = from_micros(keys[-1] >> INDEX_BITS)
        # The records are read back from the spool, else the lines from the file.
        with file.path.open("rb") if spool is None else nullcontext(spool) as source:
            fd = source.fileno()
            for first in range(0, len(keys), READ_BATCH):
                batch = [
                    (key & INDEX_MASK, key >> INDEX_BITS)
                    for key in keys[first : first + READ_BATCH]
                    if marks[(key & INDEX_MASK) - 1] >= 0
                ]
                if not batch:
                    continue
                records = read_lines(fd, ends, [number for number, _ in batch])
                for number, moment in batch:
                    data = records[number]
                    yield number, data, marks[number - 1], moment, is_event_bytes(data)
    finally:
        if spool is not None:
            spool.close()


#: Where each line's record ends (in the spool, else in the file), the sort keys, the key
#: id of each line's event (see below).
FirstPass = tuple["array[int]", list[int], "array[int]"]


def _first_pass(file: EventFile, router: Router) -> tuple[Spool | None, FirstPass]:
    """The spool of the wanted events (None: there is no room for one, their lines are
    read from the file), and (where each line's record ends there, the sort key of each
    valid distinct event, the key id of each line's event by line number - 1, -1 where
    none is wanted)."""
    start = file.helper_start()
    spools: list[Spool] = []
    try:
        if Spool.room_for(file.path.stat().st_size):
            spools = [Spool.create() for _ in range(1 if start is None else 2)]
        front_spool = spools[0] if spools else None
        back_spool = spools[1] if len(spools) > 1 else None
        helper = None
        if start is not None:
            helper = Forked(partial(_read_part, file.path, start, router, back_spool))
        seen: set[str] = set()  # the front part's message ids
        front = _read_part(file.path, 0, router, front_spool, start, seen)
        first_pass: FirstPass = array("q", [0]), [], array("i")
        _take(file, router, front, None, first_pass)
        if helper is not None:
            back = helper.result()
            base = 0
            if front_spool is not None and back_spool is not None:
                base = front_spool.size()
                front_spool.append(back_spool)
                back_spool.close()
            _take(file, router, back, seen, first_pass, base)
    except BaseException:
        for spool in spools:
            spool.close()
        raise
    return front_spool, first_pass


#: A part of the first pass: where its lines' records end and the key id of each one's
#: event, or -1 (arrays' bytes), the sort keys and message ids of its valid distinct
#: events, the keys it numbered with how many wanted events each has, its links, errors
#: and duplicates. Plain values, as a helper process hands its part back through marshal.
Part = tuple[bytes, bytes, list[int], list[str], list[str], bytes, list[Link], list[str], int]


def _read_part(
    path: Path,
    start: int,
    router: Router,
    spool: Spool | None = None,
    stop: int | None = None,
    seen: set[str] | None = None,
) -> Part:
    """The first pass over the lines from byte ``start`` to ``stop`` (the end), with the
    message ids met added to ``seen``, and the wanted events written to ``spool`` (a
    record per line there, empty for the others; without a spool, the lines' own ends
    in the file)."""
    file = EventFile(path)
    first = 1 + _lines_before(path, start)
    ends = array("q")  # in the file
    records = array("q")  # in the spool: records[k] for line first + k
    at = 0
    marks = array("i")
    keys: list[int] = []
    message_ids: list[str] = []
    numbered: dict[str, int] = {}
    weights = array("q")
    links: list[Link] = []
    wants = router.wants
    write = None if spool is None else spool.handle.write
    for number, line, event in file.distinct(ends, (start, first, stop), seen):
        keys.append(sort_key(event.timestamp, number))
        message_ids.append(event.message_id)
        if event.type in IDENTITY_TYPES:
            links.append(link_of(event))
        if len(marks) < number - first:
            if write is not None:
                records.extend(repeat(at, number - first - len(marks)))
            marks.extend(repeat(-1, number - first - len(marks)))
        if wants(event):
            key = routing_key(event.user_id, event.anonymous_id)
            mark = numbered.setdefault(key, len(numbered))
            if mark < len(weights):
                weights[mark] += 1
            else:
                weights.append(1)
            marks.append(mark)
            if write is not None:
                record = event_bytes(event) or line
                write(record)
                at += len(record)
        else:
            marks.append(-1)
        if write is not None:
            records.append(at)
    marks.extend(repeat(-1, len(ends) - len(marks)))  # blank or bad lines at the end
    if spool is not None:
        records.extend(repeat(at, len(ends) - len(records)))
        spool.flush()
    return (
        (ends if spool is None else records).tobytes(),
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
    base: int = 0,
) -> None:
    """Add a part of the first pass to what the parts before it gave, as if one process
    had read them all in file order: a message id met ``before`` makes a duplicate.
    ``base`` is where the part's spool starts in the spool it was appended to."""
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
    if base:
        shifted = array("q")
        shifted.frombytes(part_ends)
        ends.extend(map(base.__add__, shifted))
    else:
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
