"""``journey run``: the API, the engine and the dispatcher in one process, no servers needed.

Two background threads carry out the work: the engine thread fires timers and
applies events, the dispatcher thread delivers the outbox. Each sleeps until its
next due time (at most a second, so work written by another process is seen
promptly) or until woken: new events wake both at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from engine.live.engine import LiveEngine

log = logging.getLogger("journey.run")
MAX_SLEEP = 1.0
MIN_SLEEP = 0.01


def _sleep_for(due: datetime | None, now: datetime) -> float:
    if due is None:
        return MAX_SLEEP
    return max(MIN_SLEEP, min(MAX_SLEEP, (due - now).total_seconds()))


@dataclass
class Workers:
    """The engine's background threads, started and stopped together."""

    engine: LiveEngine
    stop_event: threading.Event = field(default_factory=threading.Event)
    wake_engine: threading.Event = field(default_factory=threading.Event)
    wake_dispatch: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def wake(self) -> None:
        """New events were stored."""
        self.wake_engine.set()

    def start(self) -> None:
        self.threads = [
            threading.Thread(
                target=self._loop,
                args=(self._engine_round, self.wake_engine),
                name="journey-engine",
                daemon=True,
            ),
            threading.Thread(
                target=self._loop,
                args=(self._dispatch_round, self.wake_dispatch),
                name="journey-dispatch",
                daemon=True,
            ),
        ]
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.wake_engine.set()
        self.wake_dispatch.set()
        for thread in self.threads:
            thread.join(timeout)

    def _engine_round(self) -> tuple[bool, datetime | None]:
        fired, _ = self.engine.fire_timers()
        applied, _ = self.engine.consume()
        if fired or applied:
            self.wake_dispatch.set()
        return bool(fired or applied), self.engine.next_timer()

    def _dispatch_round(self) -> tuple[bool, datetime | None]:
        delivered, _ = self.engine.dispatch()
        if delivered:
            self.wake_engine.set()  # delivery results may have set new timers
        return bool(delivered), self.engine.next_message()

    def _loop(
        self, round_: Callable[[], tuple[bool, datetime | None]], wake: threading.Event
    ) -> None:
        while not self.stop_event.is_set():
            try:
                busy, due = round_()
            # The loop must outlive any one failure (a lost connection, a locked database);
            # the failed work stays in the database and is retried next round.
            except Exception:
                log.exception("round failed; retrying in %.0f s", MAX_SLEEP)
                busy, due = False, None
            if busy:
                continue
            wake.wait(_sleep_for(due, self.engine.clock()))
            wake.clear()
