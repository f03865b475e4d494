"""``journey run``'s executor: the engine's services on background threads of this process.

One thread applies inputs (``InputService``), one delivers the outbox (``OutboxService``).
Each runs rounds back to back while there is work, then sleeps until its next due time
(at most a second, so work stored or claims lapsed in another process are seen promptly)
or until woken: new events wake the input thread; applied inputs wake the dispatcher.
Other processes on the same database run the same threads; the services' claims keep
them apart, so any number of ``journey run`` may share one PostgreSQL database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.live.engine import LiveEngine
from engine.services.work import is_passing
from engine.store.retention import purge
from engine.store.stat_counters import FOLD_EVERY, fold

log = logging.getLogger("journey.run")
MAX_SLEEP = 1.0
MIN_SLEEP = 0.01
#: After a failed round: passing database trouble is retried quickly, anything else slower.
RETRY_PASSING = 0.2
PURGE_EVERY = 3600.0


def _sleep_for(due: datetime | None, now: datetime) -> float:
    if due is None:
        return MAX_SLEEP
    return max(MIN_SLEEP, min(MAX_SLEEP, (due - now).total_seconds()))


@dataclass
class Workers:
    """The engine's background threads, started and stopped together."""

    engine: LiveEngine
    retention: timedelta | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    wake_inputs: threading.Event = field(default_factory=threading.Event)
    wake_dispatch: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def wake(self, partitions: Collection[int] = ()) -> None:
        """New events were stored (in ``partitions``)."""
        self.wake_inputs.set()

    def start(self) -> None:
        self.threads = [
            threading.Thread(
                target=self._loop,
                args=(self._input_round, self.wake_inputs),
                name="journey-inputs",
                daemon=True,
            ),
            threading.Thread(
                target=self._loop,
                args=(self._dispatch_round, self.wake_dispatch),
                name="journey-dispatch",
                daemon=True,
            ),
        ]
        self.threads.append(
            threading.Thread(
                target=self._every,
                args=(FOLD_EVERY, self._fold, "folding journey counters"),
                name="journey-counters",
                daemon=True,
            )
        )
        if self.retention is not None:
            self.threads.append(
                threading.Thread(
                    target=self._every,
                    args=(PURGE_EVERY, self._purge, "retention purge"),
                    name="journey-retention",
                    daemon=True,
                )
            )
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.wake_inputs.set()
        self.wake_dispatch.set()
        for thread in self.threads:
            thread.join(timeout)

    def _every(self, period: float, job: Callable[[], object], what: str) -> None:
        """Run ``job`` every ``period`` seconds until stopped."""
        while not self.stop_event.is_set():
            try:
                job()
            # A failed job is tried again next period; the work it would do waits.
            except Exception:
                log.exception("%s failed; trying again in %.0f s", what, period)
            self.stop_event.wait(period)

    def _purge(self) -> None:
        assert self.retention is not None
        purge(self.engine.db, self.engine.clock(), self.retention)

    def _fold(self) -> None:
        fold(self.engine.db)

    def _input_round(self) -> tuple[bool, datetime | None]:
        work = self.engine.apply()
        if work.any:
            self.wake_dispatch.set()
        return work.any or work.more, self.engine.next_timer()

    def _dispatch_round(self) -> tuple[bool, datetime | None]:
        work = self.engine.dispatch()
        if work.any:
            self.wake_inputs.set()  # delivery results may have set new timers
        return work.any or work.more, self.engine.next_message()

    def _loop(
        self, round_: Callable[[], tuple[bool, datetime | None]], wake: threading.Event
    ) -> None:
        while not self.stop_event.is_set():
            try:
                busy, due = round_()
            # The loop must outlive any one failure (a lost connection, a locked database);
            # the failed work stays in the database and is retried.
            except Exception as exc:
                if is_passing(exc):
                    log.warning("round failed (%s); retrying", type(exc).__name__)
                    self.stop_event.wait(RETRY_PASSING)
                else:
                    log.exception("round failed; retrying in %.0f s", MAX_SLEEP)
                    self.stop_event.wait(MAX_SLEEP)
                continue
            if busy:
                continue
            wake.wait(_sleep_for(due, self.engine.clock()))
            wake.clear()
