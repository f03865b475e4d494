"""The wanted events of an unsorted file, kept decoded between the two passes of its sort.

The first pass of a sort for the simulation workers (:mod:`engine.routed_events`)
decodes every line; the second reads the wanted ones back in time order, and the
workers would decode each line again. So the first pass writes every wanted event to
a spool as :func:`~engine.event_lines.event_bytes` (its line where that has no form),
and the second reads the spool instead of the file: a worker reads an event back in a
third of the time its line takes to decode.

A spool is an unnamed temporary file (on disk, not held in memory: about 280 bytes an
event of the benchmark's send-heavy stream), one per part of the first pass, each
written by the process that reads that part; the back part's is appended to the front
one's once both are done. When the temporary directory lacks room for twice the event
file, there is no spool and the lines are read back from the file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import BinaryIO

#: Bytes written at a time.
_BUFFER = 1 << 16
#: Bytes copied at a time when a spool is appended to another.
_COPY = 1 << 24


class Spool:
    """An unnamed temporary file, written from its start through ``handle``."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    @classmethod
    def room_for(cls, file_size: int) -> bool:
        """Whether the temporary directory has room for the spools of a file of
        ``file_size`` bytes (twice that: an event's bytes may outgrow its line)."""
        try:
            return shutil.disk_usage(tempfile.gettempdir()).free > 2 * file_size
        except OSError:
            return False

    @classmethod
    def create(cls) -> Spool:
        """An empty spool. Raises OSError when no temporary file can be made."""
        return cls(tempfile.TemporaryFile(buffering=_BUFFER))  # type: ignore[arg-type]

    def flush(self) -> None:
        """Hand what was written through ``handle`` to the file (a forked writer flushes
        before it exits)."""
        self.handle.flush()

    def size(self) -> int:
        """The bytes the file holds: what was flushed, by this process or another."""
        return os.fstat(self.fileno()).st_size

    def fileno(self) -> int:
        return self.handle.fileno()

    def append(self, other: Spool) -> None:
        """Copy what ``other`` holds (written by another process, which has flushed it)
        after what this spool holds."""
        self.flush()
        source, target = other.fileno(), self.fileno()
        size, base = other.size(), self.size()
        done = 0
        while done < size:
            count = min(_COPY, size - done)
            try:
                copied = os.copy_file_range(source, target, count, done, base + done)
            except (AttributeError, OSError):  # not Linux, or not between these files
                copied = os.pwrite(target, os.pread(source, count, done), base + done)
            if copied <= 0:
                raise OSError(f"a spool of the first pass ended early ({done} of {size} bytes)")
            done += copied

    def close(self) -> None:
        self.handle.close()
