"""Keeping personal data no longer than needed (``JOURNEY_EVENT_RETENTION``, e.g. ``90d``).

An applied event older than the retention period keeps its row (its id, type, times and
status: what the counts are made of) but loses its payload (the properties and traits it
carried), and ``purged_at`` says when. A message older than that, once final, loses its
rendered content. Runs, their states and every count stay.

The purge runs in small batches, each its own short transaction, walking events in stored
order (the primary key), so it never holds a lock ingest or the engine would wait for.
The scheduler runs it every hour; so does ``journey run``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from engine.store.database import Database
from engine.store.schema import Message, StoredEvent

log = logging.getLogger("journey.retention")
BATCH = 1000
#: Message statuses past which nothing changes but a provider's report.
FINAL = ("sent", "delivered", "bounced", "failed", "suppressed", "cancelled")


@dataclass(frozen=True)
class Purged:
    events: int
    messages: int


def purge(db: Database, now: datetime, retention: timedelta, batch: int = BATCH) -> Purged:
    """Purge what is older than ``retention`` at ``now``; how many rows were purged."""
    cutoff = now - retention
    events = messages = 0
    after = 0
    while True:
        with db.transaction() as session:
            rows = session.execute(
                select(StoredEvent.seq)
                .where(
                    StoredEvent.seq > after,
                    StoredEvent.received_at < cutoff,
                    StoredEvent.status != "pending",
                    StoredEvent.purged_at.is_(None),
                )
                .order_by(StoredEvent.seq)
                .limit(batch)
            ).all()
            if rows:  # type and messageId stay in their own columns
                session.execute(
                    update(StoredEvent)
                    .where(StoredEvent.seq.in_([seq for (seq,) in rows]))
                    .values(payload={}, purged_at=now)
                )
        if not rows:
            break
        events += len(rows)
        after = rows[-1][0]
    while True:
        with db.transaction() as session:
            ids = list(
                session.scalars(
                    select(Message.message_id)
                    .where(
                        Message.status.in_(FINAL),
                        Message.send_at < cutoff,
                        Message.content.is_not(None),
                    )
                    .limit(batch)
                )
            )
            if ids:
                session.execute(
                    update(Message).where(Message.message_id.in_(ids)).values(content=None)
                )
        if not ids:
            break
        messages += len(ids)
    if events or messages:
        log.info("retention: purged %d event payloads and %d message contents", events, messages)
    return Purged(events, messages)
