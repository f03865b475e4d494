"""Doorbells: a cheap, de-duplicated note on the broker that work is waiting somewhere.

The database holds the work; a doorbell only says where to look: a partition of users
(events, timers) or a channel (the outbox). Ringing sets a flag per unit in Redis
(``SET NX`` that lapses after ``lease`` seconds) and publishes one task for the units
whose flag was not set yet, so a burst of events for one partition makes one task, not
thousands. A task clears its units' flags as it starts, before it claims anything, so work
stored after that rings again. A flag left by a task that was lost lapses after the lease,
and the scheduler's sweep rings again: losing every message in the broker delays work by
one lease at most and loses none.

Without Redis (a RabbitMQ broker and no ``JOURNEY_REDIS_URL``) every ring publishes:
correct, only less thrifty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from redis import Redis

Unit = int | str
Publish = Callable[[str, list[Unit]], None]
KINDS = ("events", "timers", "dispatch")


class Doorbell:
    """Rings tasks for units of work, at most once per unit until a task answers."""

    def __init__(self, publish: Publish, redis: Redis | None, lease: float = 10.0) -> None:
        self.publish = publish
        self.redis = redis
        self.lease_ms = max(1, int(lease * 1000))

    @staticmethod
    def key(kind: str, unit: Unit) -> str:
        return f"journey:bell:{kind}:{unit}"

    def ring(self, kind: str, units: Iterable[Unit]) -> list[Unit]:
        """Publish a task for the ``units`` not already waiting for one; returns those."""
        distinct = set(units)
        wanted: list[Unit] = [
            *sorted(u for u in distinct if isinstance(u, int)),
            *sorted(u for u in distinct if isinstance(u, str)),
        ]
        if not wanted:
            return []
        fresh = wanted if self.redis is None else self._flag(kind, wanted)
        if fresh:
            self.publish(kind, fresh)
        return fresh

    def answered(self, kind: str, units: Iterable[Unit]) -> None:
        """A task for ``units`` has started: work stored from now on rings again."""
        keys = [self.key(kind, unit) for unit in units]
        if keys and self.redis is not None:
            self.redis.delete(*keys)

    def _flag(self, kind: str, units: Sequence[Unit]) -> list[Unit]:
        assert self.redis is not None
        pipe = self.redis.pipeline(transaction=False)
        for unit in units:
            pipe.set(self.key(kind, unit), "1", nx=True, px=self.lease_ms)
        replies = pipe.execute()
        return [unit for unit, set_now in zip(units, replies, strict=True) if set_now]
