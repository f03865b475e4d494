"""Chaos on the distributed engine: real API processes, Celery workers and a scheduler on
Redis and PostgreSQL, sending through local Twilio and SMTP servers.

Two journeys share the trigger ``Go`` (see ``tests.workers.stack``): ``flow`` emails,
waits 3 s and texts; ``count`` ends at once, so its runs count how often events were
applied. Every scenario ends with: every accepted event applied exactly once; each user
exactly one ``flow`` run; every message delivered, each message id given to its provider
(repeated calls, after a worker died between a call and its record, are counted and
reported: the message id is the idempotency key a provider deduplicates by); nothing
pending, no timer left, no dead letter.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import FreshDatabases
from tests.live.processes import ADMIN, Killer, Load, go, identify, wait_for
from tests.live.test_concurrency import check_exactly_once, settled
from tests.workers.stack import Stack


@pytest.fixture
def stack(fresh_databases: FreshDatabases, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path, fresh_databases.new("postgresql"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def finish(stack: Stack, load: Load, goes: Counter[str], within: float = 60) -> int:
    """Wait until settled, check everything; returns the repeated provider calls."""
    assert wait_for(lambda: settled(stack, goes), timeout=within, every=0.5), (  # type: ignore[arg-type]
        stack.rows("SELECT status, count(*) FROM events GROUP BY status"),
        stack.rows("SELECT status, count(*) FROM messages GROUP BY status"),
        stack.scalar("SELECT count(*) FROM timers"),
        stack.logs(),
    )
    check_exactly_once(stack, load, goes)  # type: ignore[arg-type]
    by_channel: dict[str, set[str]] = {"sms": set(), "email": set()}
    for message_id, channel in stack.rows("SELECT message_id, channel FROM messages"):
        by_channel[channel].add(message_id)
    texted, mailed = stack.texted(), stack.mailed()
    assert set(texted) == by_channel["sms"] and set(mailed) == by_channel["email"]
    return sum(n - 1 for n in texted.values()) + sum(n - 1 for n in mailed.values())


def users(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def send_users(load: Load, names: list[str], offset: int = 0) -> Counter[str]:
    load.send([identify(u, offset + i) for i, u in enumerate(names)], batch=50)
    load.send([go(u, 0) for u in names], batch=50)
    return Counter(names)


def test_workers_killed_every_two_seconds(stack: Stack) -> None:
    load = Load(stack.apis, threads=8)
    goes: Counter[str] = Counter()
    with Killer(stack.workers, seed=8) as killer:
        for start in range(0, 1500, 250):
            goes += send_users(load, users("w", 1500)[start : start + 250], start)
            time.sleep(1)
        time.sleep(5)  # the last timers come due while the killing goes on
    assert killer.kills >= 5
    repeated = finish(stack, load, goes, within=120)
    print(f"\nworkers killed: {killer.kills}, messages: {2 * len(goes)}, repeated: {repeated}")


def test_redis_flushed_mid_run(stack: Stack) -> None:
    load = Load(stack.apis, threads=8)
    goes = send_users(load, users("r", 600))
    time.sleep(1.5)  # mid-run: tasks queued, timers pending, doorbells flagged
    stack.redis.client.flushall()
    goes += send_users(load, users("s", 200), 600)
    repeated = finish(stack, load, goes, within=90)
    assert repeated == 0
    print(f"\nredis flushed mid-run: messages {2 * len(goes)}, repeated {repeated}")


def test_an_api_killed_mid_batch_keeps_what_it_answered(stack: Stack) -> None:
    load = Load(stack.apis, threads=16)
    victim = stack.apis[0]
    done = threading.Event()
    names = users("a", 1200)

    def kill_midway() -> None:  # halfway through the identifies, however fast they go
        wait_for(lambda: len(load.accepted) >= len(names) // 2, timeout=60, every=0.01)
        victim.kill()
        done.set()

    killer = threading.Thread(target=kill_midway)
    killer.start()
    load.send([identify(u, i) for i, u in enumerate(names)], batch=10)
    goes = Counter(names)
    load.send([go(u, 0) for u in names], batch=10)
    killer.join()
    assert done.is_set() and load.retries > 0  # requests did fail and were sent again
    victim.start()
    repeated = finish(stack, load, goes, within=90)
    assert repeated == 0
    print(f"\napi killed mid-batch: {load.retries} requests retried, messages {2 * len(goes)}")


def test_a_thousand_concurrent_triggers_for_one_user(stack: Stack) -> None:
    load = Load(stack.apis, threads=50)
    load.send([identify("hot", 1)])
    load.send([go("hot", n) for n in range(1000)])
    goes: Counter[str] = Counter({"hot": 1000})
    repeated = finish(stack, load, goes, within=90)
    assert repeated == 0


def test_database_connections_cut_mid_run(stack: Stack) -> None:
    load = Load(stack.apis, threads=8)
    name = stack.database_url.rsplit("/", 1)[1]
    cuts = 0

    def cut() -> None:
        nonlocal cuts
        with stack.db.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            connection.commit()
        cuts += 1

    goes = send_users(load, users("p", 400))
    cut()
    goes += send_users(load, users("q", 400), 400)
    time.sleep(2)
    cut()
    time.sleep(1)
    cut()
    repeated = finish(stack, load, goes, within=120)
    print(f"\npostgres connections cut {cuts} times: messages {2 * len(goes)}, repeated {repeated}")


def test_two_schedulers_do_no_harm_and_timers_fire_on_time(
    fresh_databases: FreshDatabases, tmp_path: Path
) -> None:
    stack = Stack(tmp_path, fresh_databases.new("postgresql"), apis=1, workers=1, schedulers=2)
    try:
        stack.start()
        load = Load(stack.apis, threads=4)
        goes = send_users(load, users("t", 20))
        assert finish(stack, load, goes, within=60) == 0
        # The wait starts when the email is recorded as sent; the SMS row is made in the
        # round that fires the timer. How late after the due time was that round?
        rows = stack.rows("SELECT user_key, step, send_at, created_at FROM messages")
        times: dict[str, dict[str, tuple[datetime, datetime]]] = {}
        for key, step, send_at, created_at in rows:
            times.setdefault(key, {})[step] = (send_at, created_at)
        late = [
            (t["again"][1] - (t["hello"][0] + timedelta(seconds=3))).total_seconds()
            for t in times.values()
        ]
        assert min(late) >= -0.01 and max(late) < 1.0, sorted(late)[-5:]
        print(f"\ntimers fired with two schedulers, at most {max(late) * 1000:.0f} ms late")
    finally:
        stack.stop()


def test_a_user_forgotten_mid_journey_gets_nothing_more(stack: Stack) -> None:
    load = Load(stack.apis, threads=4)
    goes = send_users(load, users("f", 20))
    assert wait_for(lambda: len(stack.mailed()) == len(goes), timeout=30)  # the emails went
    erased = httpx.delete(
        f"{stack.apis[0].url}/api/users/f3", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert erased.status_code == 200 and erased.json()["forgotten"] is True
    # Everyone else's SMS follows 3 s after their email; f3's never does.
    assert wait_for(lambda: len(stack.texted()) == len(goes) - 1, timeout=30), stack.logs()
    time.sleep(4)
    assert len(stack.texted()) == len(goes) - 1
    assert stack.scalar("SELECT count(*) FROM profiles WHERE user_key = 'user:f3'") == 0
