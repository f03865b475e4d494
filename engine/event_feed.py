"""An event file read by a second process, beside the simulation that applies it.

Reading a file is a good part of what ``journey simulate`` does: every line decoded
and validated, the order checked (and the file sorted when it is not in order),
duplicates dropped. A forked reader does that work, with :class:`EventFile` as it
is, on another core, and sends through a pipe only the lines of the events the
simulation acts on (``wanted``), in the order they must be applied. This process
decodes those lines again, with the same parser, so it gets the very same events.

The other events are skipped, which changes nothing: applying an event that is not
wanted does nothing, and the timers due before it fire in the same order whether
they fire before it or before the next wanted event (nothing happens in between).
The counts, the errors and the first and last times come once the file is read;
an error the reader meets (an unreadable file) is raised here.

Where ``os.fork`` does not exist, the file is read in this process.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import BinaryIO

from engine.event_files import EventFile
from engine.events import Event
from engine.forked import WorkerFailed

#: A record: its kind, the event's line number, the events read so far, the length
#: of what follows.
_HEADER = struct.Struct("<BIQI")
_LINE, _END, _FAILED = 1, 2, 3
#: Bytes the reader gathers before writing them to the pipe.
_CHUNK = 1 << 16


class EventFeed:
    """Iterate once for the wanted events of ``file`` in time order. Afterwards the
    counts, ``errors``, ``first`` and ``last`` are those of the whole file, as
    :class:`EventFile` gives them; ``read`` is how many events were read so far."""

    def __init__(self, file: EventFile, wanted: Callable[[Event], bool]) -> None:
        self.file = file
        self.wanted = wanted
        self.read = 0

    @property
    def errors(self) -> list[str]:
        return self.file.errors

    @property
    def duplicates(self) -> int:
        return self.file.duplicates

    @property
    def count(self) -> int:
        return self.file.count

    @property
    def first(self) -> datetime | None:
        return self.file.first

    @property
    def last(self) -> datetime | None:
        return self.file.last

    def __iter__(self) -> Iterator[Event]:
        if not hasattr(os, "fork"):
            yield from self._here()
            return
        readable, writable = os.pipe()
        pid = os.fork()
        if pid == 0:  # the reader: never returns
            os.close(readable)
            _read_into(self.file, self.wanted, writable)
        os.close(writable)
        try:
            with os.fdopen(readable, "rb", buffering=_CHUNK) as pipe:
                yield from self._received(pipe)
        finally:
            os.waitpid(pid, 0)

    def _here(self) -> Iterator[Event]:
        wanted = self.wanted
        for event in self.file:
            self.read += 1
            if wanted(event):
                yield event

    def _received(self, pipe: BinaryIO) -> Iterator[Event]:
        header_size, unpack = _HEADER.size, _HEADER.unpack
        parse = self.file.parse_line
        while True:
            header = pipe.read(header_size)
            if len(header) < header_size:
                path = self.file.path
                raise WorkerFailed(f"the reader of {path} stopped (killed?) before the end")
            kind, number, self.read, length = unpack(header)
            body = pipe.read(length)
            if kind == _LINE:
                event = parse(body, number)
                if event is not None:
                    yield event
            elif kind == _END:
                self.file.adopt(pickle.loads(body))
                return
            else:
                raise pickle.loads(body)


def _read_into(file: EventFile, wanted: Callable[[Event], bool], fd: int) -> None:
    """The reader's whole life: send the wanted lines of ``file``, then the counts (or
    what went wrong), and exit."""
    code = 0
    try:
        with os.fdopen(fd, "wb", buffering=_CHUNK) as pipe:
            write, pack = pipe.write, _HEADER.pack
            read = 0
            try:
                for number, line, event in file.records():
                    read += 1
                    if wanted(event):
                        write(pack(_LINE, number, read, len(line)))
                        write(line)
                body, kind = pickle.dumps(file.tally()), _END
            except Exception as exc:  # raised where the simulation reads the events
                body, kind = pickle.dumps(exc), _FAILED
            write(pack(kind, 0, read, len(body)))
            write(body)
    except BaseException:  # the simulation stopped reading (a broken pipe), or worse
        code = 1
    finally:
        os._exit(code)
