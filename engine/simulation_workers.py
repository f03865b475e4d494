"""``journey simulate`` on several cores, with the very trace one process writes.

Users never touch one another's state except through linked ids, so the users
are split among forked workers (:class:`~engine.user_shards.UserShards` keeps
linked ids together) and each worker runs the ordinary :class:`Simulation` over
its users' events. One forked reader reads the file (as :class:`EventFeed`
would) and sends each wanted event to its user's worker; every other worker
gets a tick, the event's place and time, so that it fires its timers before
exactly the events the single process fires them before.

Each worker sends back its trace in *records*, one per action (an event applied
or a timer fired) that wrote lines or set timers, each with where the single
process would have written it:

- an event's lines come at its place ``j`` among the wanted events: ``(j, 1)``;
- a timer fired before event ``j`` comes before it, among the timers fired there
  in due order, then in the order they were set: ``(j, 0, due, set, n)``, where
  ``set`` is the rank in the merged trace of the action that set the timer and
  ``n`` the timer's number among those that action set.

This process merges the workers' records by those keys. A timer's setter was
always merged before the timer is read (both come from one worker, in order),
so its rank is known; a worker says when a setter has no timers left, and its
rank is forgotten, so what is held stays as small as the timers pending.
"""

from __future__ import annotations

import heapq
import marshal
import os
import pickle
import queue
import signal
import struct
import threading
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, NoReturn

import orjson

from engine.catalog import Project
from engine.event_files import EventFile, Tally, from_micros
from engine.event_lines import event_from_bytes
from engine.events import Event
from engine.forked import WorkerFailed
from engine.processor import UserState, acts_on
from engine.routed_events import routed
from engine.runs import RunState, ScheduleTimer
from engine.simulate import Simulation, Summary, collected_by_hand
from engine.user_shards import UserShards

#: Reader to worker: kind, the event's place among the wanted events, its line
#: number, the events read so far, the length of the ticks that follow (pairs of place
#: and time, to fire timers at before the event), the length of what follows them (the
#: event's bytes, or its line where it has none: see
#: :func:`~engine.event_lines.event_bytes`).
_INPUT = struct.Struct("<BIIQII")
_LINE, _TICKS, _END, _FAILED, _EVENT = 1, 2, 3, 4, 5
#: Worker to this process: kind, length of what follows.
_OUTPUT = struct.Struct("<BQ")
_RECORDS, _DONE, _BROKEN = 1, 2, 3
#: The place of the timers fired after the last event (up to the horizon).
_AFTER_ALL = 1 << 62
#: What a worker gone before the end leaves the others to say.
_WORKER_DIED = "a simulation worker stopped (killed?) before the end"
#: Ticks (numbers: two a tick) held for a worker before they go without an event.
_TICKS_HELD = 8192
#: Bytes gathered before a pipe write.
_CHUNK = 1 << 16
#: A worker sends its records once they hold this many bytes of trace.
_BATCH_BYTES = 1 << 16
_PIPE_BYTES = 1 << 20

#: A record: (place, due in µs or -1 for an event, setter's id, number among the
#: setter's timers, own id if it set timers else -1, trace lines, setters released).
Record = tuple[int, int, int, int, int, bytes, tuple[int, ...]]


@dataclass
class Outcome:
    """What the workers simulated, for the summary."""

    summary: Summary
    users: int


class WorkerSimulation:
    """A simulation of ``file`` on ``workers`` forked workers.

    The reader is forked at once, so that its first pass over the file (the order check,
    the search for linked ids) runs while the journeys are compiled; it waits for the
    compiled journeys' event names before it routes a single event. Then :meth:`start`
    and :meth:`merge`, or :meth:`cancel` when there is nothing to simulate.
    """

    def __init__(self, file: EventFile, workers: int) -> None:
        self.file = file
        self.workers = workers
        self.to_workers: list[int] = []  # what the workers read
        reader_ends: list[int] = []
        for _ in range(workers):
            worker_in, reader_out = os.pipe()
            _widen(reader_out)
            self.to_workers.append(worker_in)
            reader_ends.append(reader_out)
        names_in, self.names_out = os.pipe()
        self.reader = os.fork()
        if self.reader == 0:
            for fd in (*self.to_workers, self.names_out):
                os.close(fd)
            _read(file, names_in, reader_ends)
        os.close(names_in)
        for fd in reader_ends:
            os.close(fd)

    def cancel(self) -> None:
        """Stop the reader: nothing will be simulated."""
        for fd in (*self.to_workers, self.names_out):
            os.close(fd)
        os.kill(self.reader, signal.SIGKILL)
        os.waitpid(self.reader, 0)

    def start(
        self, project: Project, horizon_after: Callable[[datetime | None], datetime | None]
    ) -> None:
        """Fork the workers for ``project`` and tell the reader what to send them.
        ``horizon_after(last event's time)`` says up to when timers fire at the end."""
        self.from_workers: list[int] = []
        self.pids = [self.reader]
        for worker_in in self.to_workers:
            main_in, worker_out = os.pipe()
            _widen(worker_out)
            pid = os.fork()
            if pid == 0:
                others = [fd for fd in self.to_workers if fd != worker_in]
                for fd in (*others, *self.from_workers, self.names_out, main_in):
                    os.close(fd)
                _work(project, self.file, horizon_after, worker_in, worker_out)
            os.close(worker_out)
            self.from_workers.append(main_in)
            self.pids.append(pid)
        for fd in self.to_workers:
            os.close(fd)
        try:
            with os.fdopen(self.names_out, "wb") as names:
                names.write(pickle.dumps(frozenset(project.by_event)))
        except BrokenPipeError:
            pass  # the reader stopped early (an unreadable file): the workers say why

    def merge(self, write: Callable[[bytes], None], advance: Callable[[float], None]) -> Outcome:
        """Write the merged trace with ``write`` as the workers make it; afterwards the
        file holds the counts and errors, as if iterated here. Raises OSError when the
        file cannot be read, WorkerFailed when a process of the simulation fails."""
        try:
            return _merge([_Source(fd) for fd in self.from_workers], self.file, write, advance)
        finally:
            for pid in self.pids:
                os.waitpid(pid, 0)


def _widen(fd: int) -> None:
    """Fewer, larger pipe transfers (Linux lets a pipe hold up to 1 MiB unprivileged)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


# -- the reader ---------------------------------------------------------------------


def _read(file: EventFile, names_fd: int, fds: list[int]) -> NoReturn:
    """Send every wanted event of ``file`` to its user's worker and a tick to the others,
    then the file's counts (or what went wrong) to all; exit. The event names the
    journeys act on come through ``names_fd`` once they are compiled (nothing: exit)."""
    code = 0
    shards = UserShards(len(fds))
    placement = _Placement(shards, names_fd)
    pipes = [os.fdopen(fd, "wb", buffering=_CHUNK) for fd in fds]
    ticks = [array("q") for _ in fds]
    pack = _INPUT.pack
    read = 0

    def send_ticks(to: int) -> None:
        body = ticks[to].tobytes()
        pipes[to].write(pack(_TICKS, 0, 0, read, len(body), 0))
        pipes[to].write(body)
        del ticks[to][:]

    shard = shards.shard
    others = [
        [(to, ticks[to]) for to in range(len(fds)) if to != owner] for owner in range(len(fds))
    ]
    try:
        try:
            for place, (number, data, key, moment, packed) in enumerate(routed(file, placement)):
                read = file.count
                owner = shard(key)
                kind = _EVENT if packed else _LINE
                pipe, pending = pipes[owner], ticks[owner]
                if pending:  # the ticks since its last event go with this one
                    body = pending.tobytes()
                    del pending[:]
                    pipe.write(pack(kind, place, number, read, len(body), len(data)))
                    pipe.write(body)
                else:
                    pipe.write(pack(kind, place, number, read, 0, len(data)))
                pipe.write(data)
                for to, pending in others[owner]:
                    pending.append(place)
                    pending.append(moment)
                    if len(pending) >= _TICKS_HELD:
                        send_ticks(to)
            read = file.count
            for to in range(len(fds)):
                if ticks[to]:
                    send_ticks(to)
            body, kind = pickle.dumps(file.tally()), _END
        except BrokenPipeError:  # a worker is gone, which is what the others must say
            body, kind = pickle.dumps(WorkerFailed(_WORKER_DIED)), _FAILED
        except Exception as exc:  # raised where the trace is merged
            body, kind = pickle.dumps(exc), _FAILED
        for pipe in pipes:
            pipe.write(pack(kind, 0, 0, read, 0, len(body)))
            pipe.write(body)
            pipe.close()
    except BaseException:  # a worker stopped reading (a broken pipe), or worse
        code = 1
    finally:
        os._exit(code)


class _Placement:
    """The reader's :class:`Router`: the events the journeys act on go to workers, users
    whose ids are linked to the same one, and the heaviest users first to the least
    loaded when the events are all known beforehand."""

    def __init__(self, shards: UserShards, names_fd: int) -> None:
        self.shards = shards
        self.names_fd = names_fd
        self.names: frozenset[str] = frozenset()
        self.weights = array("q")  # events per key id

    def learn(self, event: Event) -> None:
        self.shards.learn(event)

    def start(self) -> None:
        """Wait for the event names the compiled journeys act on (nothing: cancelled)."""
        with os.fdopen(self.names_fd, "rb") as pipe:
            told = pipe.read()
        if not told:
            os._exit(0)
        self.names = pickle.loads(told)

    def wants(self, event: Event) -> bool:
        return acts_on(event, self.names)

    def key_id(self, key: str, events: int) -> int:
        number = self.shards.key_id(key)
        weights = self.weights
        if number < len(weights):
            weights[number] += events
        else:
            weights.append(events)
        return number

    def placed(self) -> None:
        self.shards.balance(self.weights)


# -- a worker -----------------------------------------------------------------------


class _Worker(Simulation):
    """A simulation of some users, sending its trace as records keyed for the merge."""

    def __init__(self, project: Project, out: IO[bytes]) -> None:
        lines: list[bytes] = []
        dumps, append = orjson.dumps, lines.append
        super().__init__(project, lambda line: append(dumps(line)))
        self.lines = lines
        self.out = out
        self.action = 0
        self.set_here = 0
        #: timer -> (the id of the action that set it, its number among that action's)
        self.setters: dict[str, tuple[int, int]] = {}
        self.pending: dict[int, int] = {}
        self.released: list[int] = []
        self.batch: list[Record] = []
        self.batch_bytes = 0
        self.read = 0
        #: The place among the wanted events of what is being applied or fired before.
        self.place = 0

    # -- actions: each an event applied or a timer fired, at ``place`` --

    def apply(self, event: Event, now: datetime) -> None:
        self.action += 1
        self.set_here = 0
        super().apply(event, now)
        self.record(-1, 0, 0)

    def fire(self, timer_id: str, owner: tuple[str, str], due: datetime, due_micros: int) -> None:
        setter, number = self.forget(timer_id)
        self.action += 1
        self.set_here = 0
        super().fire(timer_id, owner, due, due_micros)
        self.record(due_micros, setter, number)

    def record(self, due: int, setter: int, number: int) -> None:
        """Send what the action wrote (and whether it set timers) for the merge."""
        place = self.place
        lines = self.lines
        if not lines and not self.set_here:
            return
        payload = b"\n".join(lines) + b"\n" if lines else b""
        lines.clear()
        released: tuple[int, ...] = ()
        if self.released:
            released = tuple(self.released)
            self.released.clear()
        own = self.action if self.set_here else -1
        self.batch.append((place, due, setter, number, own, payload, released))
        self.batch_bytes += len(payload) + 64
        if self.batch_bytes >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        body = marshal.dumps((self.read, self.batch))
        self.out.write(_OUTPUT.pack(_RECORDS, len(body)))
        self.out.write(body)
        self.batch = []
        self.batch_bytes = 0

    # -- timers: who set them --

    def timer_set(self, user: UserState, command: ScheduleTimer) -> None:
        if command.timer_id in self.setters:
            self.forget(command.timer_id)
        super().timer_set(user, command)
        self.setters[command.timer_id] = (self.action, self.set_here)
        self.set_here += 1
        self.pending[self.action] = self.pending.get(self.action, 0) + 1

    def timer_cancelled(self, user: UserState, timer_id: str) -> None:
        super().timer_cancelled(user, timer_id)
        if timer_id in self.setters:
            self.forget(timer_id)

    def run_dropped(self, user: UserState, run: RunState) -> None:
        super().run_dropped(user, run)
        if run.waiting and run.waiting.timer_id in self.setters:
            self.forget(run.waiting.timer_id)

    def forget(self, timer_id: str) -> tuple[int, int]:
        """The timer's setter; the setter is released once none of its timers is left."""
        setter, number = self.setters.pop(timer_id)
        left = self.pending[setter] - 1
        if left:
            self.pending[setter] = left
        else:
            del self.pending[setter]
            self.released.append(setter)
        return setter, number


def _work(
    project: Project,
    file: EventFile,
    horizon_after: Callable[[datetime | None], datetime | None],
    fd_in: int,
    fd_out: int,
) -> NoReturn:
    """A worker's whole life: simulate what the reader sends, send the records, exit."""
    code = 0
    out = os.fdopen(fd_out, "wb", buffering=_CHUNK)
    try:
        try:
            worker = _Worker(project, out)
            with os.fdopen(fd_in, "rb", buffering=_CHUNK) as pipe:
                ending = _drive(worker, pipe, file, horizon_after)
            body, kind = pickle.dumps(ending), _DONE
        except Exception as exc:
            body, kind = pickle.dumps(exc), _BROKEN
        out.write(_OUTPUT.pack(kind, len(body)))
        out.write(body)
        out.close()
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _drive(
    worker: _Worker,
    pipe: IO[bytes],
    file: EventFile,
    horizon_after: Callable[[datetime | None], datetime | None],
) -> tuple[dict[str, Counter[str]], int, Tally]:
    with collected_by_hand() as tick:
        return _apply_all(worker, pipe, file, horizon_after, tick)


def _apply_all(
    worker: _Worker,
    pipe: IO[bytes],
    file: EventFile,
    horizon_after: Callable[[datetime | None], datetime | None],
    tick: Callable[[], bool],
) -> tuple[dict[str, Counter[str]], int, Tally]:
    header_size, unpack = _INPUT.size, _INPUT.unpack
    parse, take, read, from_bytes = file.parse_line, worker.take, pipe.read, event_from_bytes
    stopped = WorkerFailed(f"the reader of {file.path} stopped (killed?) before the end")
    while True:
        header = read(header_size)
        if len(header) < header_size:
            raise stopped
        kind, place, number, worker.read, ticked, length = unpack(header)
        body = read(ticked + length)
        if len(body) < ticked + length:
            raise stopped
        if ticked:  # fired before what follows them
            ticks = array("q")
            ticks.frombytes(body[:ticked])
            _tick(worker, ticks)
            body = body[ticked:]
        worker.place = place
        if kind == _EVENT:
            take(from_bytes(body))
            tick()
        elif kind == _LINE:
            event = parse(body, number)
            if event is not None:
                take(event)
                tick()
        elif kind == _TICKS:
            pass  # ticks alone, fired above
        elif kind == _END:
            file.adopt(pickle.loads(body))
            horizon = horizon_after(file.last)
            if horizon is not None:
                worker.place = _AFTER_ALL
                worker.fire_due(horizon)
            if worker.batch:
                worker.flush()
            return dict(worker.summary.counts), len(worker.users), file.tally()
        else:
            raise pickle.loads(body)


def _tick(worker: _Worker, ticks: array[int]) -> None:
    """Fire the timers due at the other workers' events (pairs of place and time)."""
    timers = worker.timers
    if not timers:
        return
    due = timers[0][0]
    if ticks[-1] < due:
        return
    for index in range(0, len(ticks), 2):
        moment = ticks[index + 1]
        if moment >= due:
            worker.place = ticks[index]
            worker.fire_due(from_micros(moment))
            if not timers:
                return
            due = timers[0][0]


# -- the merge ----------------------------------------------------------------------


class _Source:
    """One worker's records, read by a thread of their own so no pipe ever fills while
    the merge waits on another worker."""

    def __init__(self, fd: int) -> None:
        self.frames: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self.records: list[Record] = []
        self.at = 0
        self.read = 0
        self.ending: Any = None
        self.thread = threading.Thread(target=self._pump, args=(fd,), daemon=True)
        self.thread.start()

    def _pump(self, fd: int) -> None:
        size, unpack = _OUTPUT.size, _OUTPUT.unpack
        died = WorkerFailed(_WORKER_DIED)
        with os.fdopen(fd, "rb", buffering=_CHUNK) as pipe:
            while True:
                header = pipe.read(size)
                if len(header) < size:
                    self.frames.put((_BROKEN, died))
                    return
                kind, length = unpack(header)
                body = pipe.read(length)
                if len(body) < length:
                    self.frames.put((_BROKEN, died))
                    return
                try:
                    frame = marshal.loads(body) if kind == _RECORDS else pickle.loads(body)
                except Exception as exc:  # whatever it is, the merge must hear of it
                    self.frames.put((_BROKEN, WorkerFailed(f"unreadable worker output: {exc}")))
                    return
                self.frames.put((kind, frame))
                if kind != _RECORDS:
                    return

    def next(self) -> Record | None:
        """The next record; None once the worker is done (``ending`` then holds its end)."""
        while self.at >= len(self.records):
            kind, body = self.frames.get()
            if kind == _RECORDS:
                self.read, self.records = body
                self.at = 0
            elif kind == _DONE:
                self.ending = body
                return None
            else:
                if isinstance(body, OSError | WorkerFailed):
                    raise body
                raise WorkerFailed(f"a simulation worker failed: {body!r}")
        record = self.records[self.at]
        self.at += 1
        return record


def _merge(
    sources: list[_Source],
    file: EventFile,
    write: Callable[[bytes], None],
    advance: Callable[[float], None],
) -> Outcome:
    ranks: list[dict[int, int]] = [{} for _ in sources]
    heap: list[tuple[tuple[int, ...], int, Record]] = []

    def push(source: int, record: Record | None) -> None:
        if record is None:
            return
        place, due = record[0], record[1]
        if due < 0:
            key: tuple[int, ...] = (place, 1)
        else:
            key = (place, 0, due, ranks[source][record[2]], record[3])
        heapq.heappush(heap, (key, source, record))

    for index, source in enumerate(sources):
        push(index, source.next())
    rank = 0
    out: list[bytes] = []
    size = shown = 0
    pop = heapq.heappop
    while heap:
        _, index, record = pop(heap)
        payload = record[5]
        if payload:
            out.append(payload)
            size += len(payload)
            if size >= _CHUNK * 4:
                write(b"".join(out))
                out.clear()
                size = 0
                read = max(source.read for source in sources)
                advance(read - shown)
                shown = read
        mine = ranks[index]
        if record[4] >= 0:
            mine[record[4]] = rank
            rank += 1
        for setter in record[6]:
            del mine[setter]
        push(index, sources[index].next())
    if out:
        write(b"".join(out))
    summary = Summary()
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    users = 0
    for source in sources:
        theirs, their_users, _ = source.ending
        for journey_id, counter in theirs.items():
            counts[journey_id].update(counter)
        users += their_users
    summary.counts = counts
    file.adopt(sources[0].ending[2])
    return Outcome(summary, users)
