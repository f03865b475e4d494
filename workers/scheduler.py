"""``journey scheduler``: the periodic jobs that ring doorbells for work nobody rang for.

APScheduler runs these jobs, each a few queries and a few doorbells:

- **timers** (every 0.2 s): partitions with timers due now ring the ``timers`` queue, so a
  timer fires within a fraction of a second of its due time. Delays are timer rows; no
  Celery ETA or countdown task ever stands for a wait.
- **sweep** (every 2 s): partitions with pending events and channels with due messages
  (or claims whose lease ran out) ring again. This is what makes the broker a doorbell:
  if every message in it is lost, the work is still in the database and is rung again
  within one sweep (plus the doorbell's lease, when its flag survived).
- **deployments** (every 5 s): a new deployment is compiled and announced; workers pick it
  up on their next round.
- **counters** (every 5 s): folds the journey counters' deltas
  (``engine.store.stat_counters``), so reports stay cheap.
- **retention** (every hour, with ``JOURNEY_EVENT_RETENTION``): purges what is older than
  the retention period (``engine.store.retention``), in small batches.

Any number of schedulers may run: doorbells are de-duplicated and the work itself is
claimed in the database, so a second scheduler costs a few queries and does no harm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, exists, func, or_, select

from engine.store.database import Database
from engine.store.deployments import DeployedCatalog
from engine.store.retention import Purged, purge
from engine.store.schema import (
    Deployment,
    JourneyState,
    Message,
    Partition,
    StoredEvent,
    Timer,
)
from engine.store.stat_counters import fold
from workers.doorbell import Doorbell

log = logging.getLogger("journey.scheduler")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Sweeper:
    """The scheduler's jobs, over one database and one doorbell."""

    db: Database
    doorbell: Doorbell
    clock: Clock = utc_now
    catalog: DeployedCatalog | None = None
    retention: timedelta | None = None
    deployment: int | None = field(default=None, init=False)

    def purge(self) -> Purged | None:
        """Purge what is older than the retention period (if one is set)."""
        if self.retention is None:
            return None
        return purge(self.db, self.clock(), self.retention)

    def fold_counters(self) -> int:
        """Fold the journey counters' deltas; how many were folded."""
        return fold(self.db)

    def due_timers(self) -> list[int]:
        """Ring the partitions whose timers are due."""
        now = self.clock()
        due = exists().where(Timer.partition == Partition.id, Timer.due_at <= now)
        with self.db.sessions() as session:
            partitions = list(session.scalars(select(Partition.id).where(due)))
        return [int(p) for p in self.doorbell.ring("timers", partitions)]

    def sweep(self) -> tuple[list[int], list[str]]:
        """Ring every partition with pending events and every channel with due messages."""
        now = self.clock()
        pending = exists().where(
            StoredEvent.partition == Partition.id, StoredEvent.status == "pending"
        )
        due = or_(
            and_(Message.status == "pending", Message.send_at <= now),
            and_(Message.status == "sending", Message.claimed_until < now),
        )
        with self.db.sessions() as session:
            partitions = list(session.scalars(select(Partition.id).where(pending)))
            held = select(JourneyState.journey_id).where(JourneyState.state == "paused")
            channels = list(
                session.scalars(
                    select(Message.channel).where(due, Message.journey_id.not_in(held)).distinct()
                )
            )
        rung = self.doorbell.ring("events", partitions)
        rung_channels = self.doorbell.ring("dispatch", channels)
        return [int(p) for p in rung], [str(c) for c in rung_channels]

    def deployments(self) -> int | None:
        """Compile a deployment newer than the last one seen; its id when there was one."""
        with self.db.sessions() as session:
            latest = session.scalar(select(func.max(Deployment.id)))
            if latest is None or latest == self.deployment:
                return None
            catalog = self.catalog or DeployedCatalog(self.db)
            self.catalog = catalog
            catalog.refresh(session)
        self.deployment = int(latest)
        log.info(
            "deployment %s is the running version (%s); workers take it up on their next round",
            latest,
            ", ".join(sorted(catalog.current.journeys)) or "no journeys",
        )
        return self.deployment
