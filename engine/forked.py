"""A function run in a forked child process, its result read back (``journey simulate``).

The first pass over an event file (the order check, the first pass of a sort) runs
before any event can be simulated, so the other cores would only wait: a helper
process takes the back part of the file meanwhile. Only the fork start method is
used: the child has the parent's memory as it was, so nothing has to be pickled to
start it, and it leaves with ``os._exit`` (no exit handlers, no buffers of the
parent's flushed twice).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def usable_cores() -> int:
    """How many cores this process may run on (at least one)."""
    if hasattr(os, "sched_getaffinity"):  # Linux: what the process is allowed, not the machine
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether helper processes can be forked here."""
    return hasattr(os, "fork")


class WorkerFailed(Exception):
    """A process of the simulation failed or was killed; the trace is incomplete."""


def _die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies (Linux), so a helper
    whose parent was killed does not finish a pass nobody reads."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Forked(Generic[T]):
    """``work()`` running in a forked child; :meth:`result` waits for what it returned
    (a value marshal can write: numbers, text, bytes, and lists, tuples and dicts of
    them), or :meth:`cancel` stops it."""

    def __init__(self, work: Callable[[], T]) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the helper
            os.close(read_fd)
            code = 1
            try:
                _die_with_parent()
                data = marshal.dumps(work())  # type: ignore[arg-type]  # see the docstring
                with os.fdopen(write_fd, "wb") as out:
                    out.write(data)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid = pid
        self.fd = read_fd

    def result(self) -> T:
        """What ``work()`` returned. Raises WorkerFailed when the helper did not finish."""
        with os.fdopen(self.fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        if status != 0 or not data:
            raise WorkerFailed("a helper process stopped (killed?) before the end")
        value: Any = marshal.loads(data)
        return value  # type: ignore[no-any-return]

    def cancel(self) -> None:
        """Stop the helper: its result is not wanted."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.close(self.fd)
        os.waitpid(self.pid, 0)
