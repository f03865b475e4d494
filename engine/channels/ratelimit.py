"""Rate limits per provider account (and per recipient), shared by every worker.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one
timestamp per key): a key remembers the theoretical arrival time of its next message;
a message is allowed when that time is no further ahead than the burst allows. Several
limits are taken together or not at all (a WeCom app message counts against the account's
limit and the member's), so a refusal never uses up a slot of another limit.

Two backends with one contract:

- :class:`RedisRateLimiter`: one Lua script per call, on the Redis server's clock, so every
  worker of every host shares the limit. Keys expire when they no longer matter.
- :class:`MemoryRateLimiter`: the same arithmetic in the process, for ``journey run``.

Keys carry no personal data: a recipient is named by a hash (:func:`recipient_key`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis import Redis

from engine.channels.rates import Rate

MICROS = 1_000_000


@dataclass(frozen=True)
class Limit:
    """A rate that applies to everything sent under ``key``."""

    key: str
    rate: Rate


class RateLimiter(Protocol):
    def acquire(self, limits: Sequence[Limit], cost: int = 1) -> float:
        """Take ``cost`` messages from every limit, or from none.

        Returns 0.0 when taken, else the seconds until the same call could succeed.
        """
        ...


def recipient_key(address: str) -> str:
    """A stable, non-reversible name for a recipient, for use inside keys."""
    return hashlib.sha256(address.encode()).hexdigest()[:20]


def _gcra_params(limit: Limit) -> tuple[int, int]:
    """(emission interval, burst tolerance) in microseconds."""
    interval = max(1, round(limit.rate.interval * MICROS))
    return interval, interval * limit.rate.burst


class MemoryRateLimiter:
    """GCRA in the process: right for one process; workers on many hosts need Redis."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self._clock = clock
        self._max_keys = max_keys
        self._tats: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, limits: Sequence[Limit], cost: int = 1) -> float:
        with self._lock:
            now = round(self._clock() * MICROS)
            wait, new = 0, {}
            for limit in limits:
                interval, tolerance = _gcra_params(limit)
                tat = max(self._tats.get(limit.key, now), now) + interval * cost
                wait = max(wait, tat - tolerance - now)
                new[limit.key] = tat
            if wait > 0:
                return wait / MICROS
            self._tats.update(new)
            if len(self._tats) > self._max_keys:  # forget keys whose time has passed
                self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
            return 0.0


# KEYS: one per limit. ARGV: cost, then (interval, tolerance) per key, in microseconds.
# Returns 0 when taken, else the microseconds to wait. TIME makes every worker share one
# clock; effects replication (default since Redis 7) makes writing after TIME allowed.
GCRA_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local stored = redis.call('GET', key)
  local tat = now
  if stored then tat = math.max(tonumber(stored), now) end
  tat = tat + interval * cost
  if tat - tolerance - now > wait then wait = tat - tolerance - now end
  tats[i] = tat
end
if wait > 0 then return math.ceil(wait) end
for i, key in ipairs(KEYS) do
  local ttl = math.ceil((tats[i] - now) / 1000) + 1
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', ttl)
end
return 0
"""


class RedisRateLimiter:
    """GCRA in Redis: one round trip per call, shared by every worker."""

    def __init__(self, redis: Redis, prefix: str = "journey:rate:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(GCRA_SCRIPT)

    def acquire(self, limits: Sequence[Limit], cost: int = 1) -> float:
        if not limits:
            return 0.0
        args: list[int] = [cost]
        for limit in limits:
            args.extend(_gcra_params(limit))
        keys = [self._prefix + limit.key for limit in limits]
        waited = self._script(keys=keys, args=args)
        return int(waited) / MICROS
