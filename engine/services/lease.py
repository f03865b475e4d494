"""Keeping a dispatcher's claim alive while it works on its messages."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import TracebackType

from sqlalchemy import update

from engine.services.work import Clock
from engine.store.database import Database
from engine.store.schema import Message

log = logging.getLogger("journey.dispatch")


class LeaseKeeper:
    """Renews the lease of every message claimed under ``token`` every third of ``lease``,
    from a background thread, until the ``with`` block ends.

    The lease is what another dispatcher waits out before taking a message over, so it is
    short (seconds) and renewed, never long enough to cover a whole batch of slow sends:
    a dispatcher that dies is replaced within one lease.
    """

    def __init__(self, db: Database, token: str, lease: timedelta, clock: Clock) -> None:
        self.db = db
        self.token = token
        self.lease = lease
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journey-lease", daemon=True)

    def renew(self) -> int:
        """Extend the claim now; how many messages it still holds."""
        with self.db.transaction() as session:
            result = session.execute(
                update(Message)
                .where(Message.claimed_by == self.token, Message.status == "sending")
                .values(claimed_until=self.clock() + self.lease)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    def _run(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while not self._stop.wait(interval):
            try:
                self.renew()
            # A renewal that fails is retried at the next tick; if they all fail the lease
            # runs out and another dispatcher takes the messages over, which is safe.
            except Exception as exc:
                log.warning("could not renew a claim: %s", type(exc).__name__)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
