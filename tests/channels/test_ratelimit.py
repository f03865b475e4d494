"""Rate limits: one contract for the in-process and the Redis backends (fakeredis and real).

The Redis backend runs on the server's clock, so the timing here uses slow rates (per
minute) where a few milliseconds between calls cannot matter, and waits out the one
refill it checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import fakeredis
import pytest
from redis import Redis

from engine.channels.ratelimit import (
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    recipient_key,
)
from engine.channels.rates import Rate

PER_MINUTE = Rate(5, 60.0)


@dataclass
class Backend:
    """Makes limiters that share one store, and lets time pass for them."""

    make: Callable[[], RateLimiter]
    wait: Callable[[float], None]


@pytest.fixture(params=["memory", "fakeredis", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        now = [1000.0]
        shared = MemoryRateLimiter(clock=lambda: now[0])

        def advance(seconds: float) -> None:
            now[0] += seconds

        yield Backend(lambda: shared, advance)
    elif request.param == "fakeredis":
        server = fakeredis.FakeServer()
        yield Backend(lambda: RedisRateLimiter(fakeredis.FakeRedis(server=server)), time.sleep)
    else:
        url = request.getfixturevalue("redis_url")
        clients: list[Redis] = []

        def make() -> RateLimiter:
            clients.append(Redis.from_url(url))
            return RedisRateLimiter(clients[-1])

        yield Backend(make, time.sleep)
        for client in clients:
            client.close()


def test_a_burst_then_a_wait(backend: Backend) -> None:
    limiter = backend.make()
    limit = [Limit("sms:twilio:AC1", PER_MINUTE)]
    assert [limiter.acquire(limit) for _ in range(5)] == [0.0] * 5
    wait = limiter.acquire(limit)
    assert 11.0 < wait <= 12.0  # one message every 12 seconds once the burst is spent


def test_the_bucket_refills(backend: Backend) -> None:
    limiter = backend.make()
    limit = [Limit("push:fcm:p1", Rate(20, 1.0))]
    for _ in range(20):
        assert limiter.acquire(limit) == 0.0
    wait = limiter.acquire(limit)
    assert 0 < wait <= 0.05
    backend.wait(wait + 0.03)
    assert limiter.acquire(limit) == 0.0


def test_several_limits_are_taken_together_or_not_at_all(backend: Backend) -> None:
    limiter = backend.make()
    member = Limit("wecom:app:corp:to:abc", Rate(1, 60.0))
    account = Limit("wecom:app:corp", PER_MINUTE)
    assert limiter.acquire([member, account]) == 0.0
    assert limiter.acquire([member, account]) > 0  # the member's limit refuses...
    # ...and the refusal took nothing from the account: four more fit in its burst.
    assert [limiter.acquire([account]) for _ in range(5)][:4] == [0.0] * 4
    assert limiter.acquire([account]) > 0


def test_cost_takes_several_slots(backend: Backend) -> None:
    limiter = backend.make()
    limit = [Limit("sms:aliyun:k", PER_MINUTE)]
    assert limiter.acquire(limit, cost=3) == 0.0
    assert limiter.acquire(limit, cost=3) > 0
    assert limiter.acquire(limit, cost=2) == 0.0


def test_every_worker_shares_the_limit(backend: Backend) -> None:
    first, second = backend.make(), backend.make()
    limit = [Limit("email:smtp:relay", PER_MINUTE)]
    taken = [(first if i % 2 else second).acquire(limit) == 0.0 for i in range(8)]
    assert taken.count(True) == 5


@pytest.fixture(params=["fakeredis", "redis"])
def redis_client(request: pytest.FixtureRequest) -> Iterator[Redis]:
    if request.param == "fakeredis":
        client: Redis = fakeredis.FakeRedis()
    else:
        client = Redis.from_url(request.getfixturevalue("redis_url"))
    yield client
    client.close()


def test_keys_expire_and_name_no_one(redis_client: Redis) -> None:
    who = recipient_key("lilei@example.com")
    assert "lilei" not in who and len(who) == 20
    RedisRateLimiter(redis_client).acquire([Limit(f"wecom:app:c:to:{who}", PER_MINUTE)])
    keys = [key.decode() for key in redis_client.keys("*")]
    assert keys == [f"journey:rate:wecom:app:c:to:{who}"]
    assert 0 < redis_client.pttl(keys[0]) <= 12_001


def test_concurrent_workers_take_exactly_the_burst(redis_url: str) -> None:
    clients = [Redis.from_url(redis_url) for _ in range(6)]
    limit = [Limit("sms:aliyun:shared", Rate(50, 60.0))]
    allowed = []
    lock = threading.Lock()

    def work(client: Redis) -> None:
        limiter = RedisRateLimiter(client)
        for _ in range(20):
            if limiter.acquire(limit) == 0.0:
                with lock:
                    allowed.append(1)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    assert len(allowed) == 50
