"""Partitions of users: how work is found and claimed without two workers on one user.

Every user key belongs to one of :data:`PARTITIONS` partitions by a stable hash. An event
is stored with the partition of the key it is routed by, a timer with its user's. A worker
claims partitions by locking their rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's
single writer serialises whole transactions), applies what is pending there, and commits,
which releases them. A claim lives exactly as long as its transaction: a worker that dies
loses its connection and with it its claims, at once, with nothing to wait out.

The partition is the unit of claiming and of doorbells; the user is the unit of order and
of mutual exclusion (its profile row, locked by ``engine.store.users``). Partitions are
searched from a random starting point, so every worker's claims spread over all of them
and no partition with work waits behind the others.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, case, exists, or_, select
from sqlalchemy.orm import Session

from engine.store.schema import Partition, StoredEvent, Timer

#: Fixed by the schema: changing it means re-hashing every pending event and timer.
PARTITIONS = 1024


def partition_of(key: str) -> int:
    """The partition of a user key (``user:…`` or ``anon:…``), the same on every machine."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % PARTITIONS


def _with_work(now: datetime) -> Select[int]:
    """Partitions with pending events or timers due by ``now``: two index probes each."""
    pending = exists().where(StoredEvent.partition == Partition.id, StoredEvent.status == "pending")
    due = exists().where(Timer.partition == Partition.id, Timer.due_at <= now)
    return select(Partition.id).where(or_(pending, due))


def claim_partitions(
    session: Session,
    now: datetime,
    limit: int,
    wanted: Sequence[int] | None = None,
    rng: random.Random | None = None,
) -> list[int]:
    """Lock up to ``limit`` partitions that have pending events or timers due by ``now``.

    ``wanted`` restricts the search (a doorbell names its partitions). Partitions another
    worker holds are skipped, never waited for. The locks last until the transaction ends.
    """
    start = (rng or random).randrange(PARTITIONS)
    query = (
        _with_work(now)
        .order_by(case((Partition.id >= start, 0), else_=1), Partition.id)
        .limit(limit)
    )
    if wanted is not None:
        query = query.where(Partition.id.in_(sorted(set(wanted))))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Partition)
    return list(session.scalars(query))


def partitions_with_work(session: Session, now: datetime) -> list[int]:
    """Every partition with pending events or due timers, claimed or not (for sweeps)."""
    return list(session.scalars(_with_work(now).order_by(Partition.id)))
