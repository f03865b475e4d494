"""What every service shares: the tally of a round, which failures are passing, and
setting work aside as a dead letter.

A failure is *passing* when the database or the connection to it failed (a lost
connection, a deadlock, a lock or statement timeout, SQLite's "database is locked"):
the work stays where it was and is tried again next round. Any other failure is the
work's own (a bug, a bad row): the batch is retried in smaller parts, and the part that
still fails is set aside in ``dead_letters`` so it never blocks the rest.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from engine.store.schema import DeadLetter

log = logging.getLogger("journey.engine")
Clock = Callable[[], datetime]


@dataclass
class Work:
    """What one round of a service did."""

    events: int = 0
    timers: int = 0
    messages: int = 0
    dead: int = 0
    more: bool = False  # it stopped at a limit: there is more to do right away
    channels: frozenset[str] = frozenset()  # channels that now have messages due to send

    @property
    def any(self) -> bool:
        return bool(self.events or self.timers or self.messages or self.dead)

    def __add__(self, other: Work) -> Work:
        return Work(
            self.events + other.events,
            self.timers + other.timers,
            self.messages + other.messages,
            self.dead + other.dead,
            self.more or other.more,
            self.channels | other.channels,
        )


def is_passing(exc: BaseException) -> bool:
    """True for a failure of the database or the connection, not of the work itself."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout)


def dead_letter(
    session: Session,
    kind: str,
    ref: str,
    exc: BaseException,
    now: datetime,
    payload: dict[str, Any] | None = None,
) -> None:
    """Record ``ref`` (an event seq, a timer id, a message id) as failed for good."""
    log.error("%s %s failed and was dead-lettered: %s", kind, ref, type(exc).__name__)
    session.add(
        DeadLetter(
            kind=kind,
            ref=ref,
            error="".join(traceback.format_exception_only(exc)).strip(),
            payload={
                **(payload or {}),
                "traceback": "".join(traceback.format_exception(exc, limit=8)),
            },
            created_at=now,
        )
    )
