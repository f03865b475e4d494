"""Doorbells: one task per unit until a task answers; lapsed flags ring again."""

from __future__ import annotations

import time

import fakeredis
from redis import Redis

from workers.doorbell import Doorbell, Unit


class Published:
    def __init__(self) -> None:
        self.tasks: list[tuple[str, list[Unit]]] = []

    def __call__(self, kind: str, units: list[Unit]) -> None:
        self.tasks.append((kind, list(units)))


def doorbell(redis: Redis | None, lease: float = 10.0) -> tuple[Doorbell, Published]:
    published = Published()
    return Doorbell(published, redis, lease=lease), published


def test_a_unit_rings_once_until_a_task_answers() -> None:
    bell, published = doorbell(fakeredis.FakeRedis())
    assert bell.ring("events", [3, 1, 3]) == [1, 3]
    assert bell.ring("events", [1, 2]) == [2]  # 1 already has a task waiting
    assert bell.ring("timers", [1]) == [1]  # kinds ring apart
    bell.answered("events", [1])
    assert bell.ring("events", [1, 2, 3]) == [1]
    assert published.tasks == [("events", [1, 3]), ("events", [2]), ("timers", [1]),
                               ("events", [1])]  # fmt: skip


def test_nothing_new_publishes_nothing() -> None:
    bell, published = doorbell(fakeredis.FakeRedis())
    bell.ring("dispatch", ["sms"])
    assert bell.ring("dispatch", ["sms"]) == [] and bell.ring("dispatch", []) == []
    assert published.tasks == [("dispatch", ["sms"])]


def test_a_flag_left_by_a_lost_task_lapses_after_the_lease() -> None:
    bell, _published = doorbell(fakeredis.FakeRedis(), lease=0.2)
    bell.ring("events", [7])
    assert bell.ring("events", [7]) == []
    time.sleep(0.3)
    assert bell.ring("events", [7]) == [7]


def test_without_redis_every_ring_publishes() -> None:
    bell, published = doorbell(None)
    bell.ring("events", [1])
    bell.ring("events", [1])
    assert published.tasks == [("events", [1]), ("events", [1])]


def test_flags_live_in_the_real_redis(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        bell, _published = doorbell(client, lease=5)
        assert bell.ring("events", list(range(100))) == list(range(100))
        assert bell.ring("events", list(range(50, 150))) == list(range(100, 150))
        assert 0 < client.pttl(Doorbell.key("events", 1)) <= 5000
        bell.answered("events", range(150))
        assert client.exists(Doorbell.key("events", 1)) == 0
    finally:
        client.close()
