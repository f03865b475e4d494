"""How far behind the engine is: the figures ops watch (``GET /api/ops``, the dashboard).

- timer lag: now minus the oldest timer that is due (0 when none is): how late timers fire;
- outbox backlog: messages ``pending`` whose send time has come;
- events pending: accepted events not applied yet;
- dead letters: work set aside and not replayed.

Each is one indexed query (``ix_timers_due_at_seq``, ``ix_messages_status_send_at``,
``ix_events_pending``), cheap enough to poll.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.durations import iso_z
from engine.store.dead_letters import count_waiting
from engine.store.schema import Message, StoredEvent, Timer


@dataclass(frozen=True)
class Backlog:
    at: datetime
    timer_lag_seconds: float
    oldest_due_timer: datetime | None
    timers_due: int
    outbox_backlog: int
    events_pending: int
    dead_letters: int

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        found["at"] = iso_z(self.at)
        found["oldest_due_timer"] = iso_z(self.oldest_due_timer) if self.oldest_due_timer else None
        return found


def backlog(session: Session, now: datetime) -> Backlog:
    oldest, due = session.execute(
        select(func.min(Timer.due_at), func.count()).where(Timer.due_at <= now)
    ).one()
    outbox = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.status == "pending", Message.send_at <= now)
    )
    events = session.scalar(
        select(func.count()).select_from(StoredEvent).where(StoredEvent.status == "pending")
    )
    return Backlog(
        at=now,
        timer_lag_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        oldest_due_timer=oldest,
        timers_due=int(due or 0),
        outbox_backlog=int(outbox or 0),
        events_pending=int(events or 0),
        dead_letters=count_waiting(session),
    )
