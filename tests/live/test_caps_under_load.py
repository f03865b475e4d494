"""Frequency caps held by several `journey run` processes on one PostgreSQL, with kill -9.

``ping`` (``re_entry: always``) sends an SMS when ``Go`` comes and the user has no run of
it waiting for a delivery; ``count`` ends at once, so its runs say how often each ``Go``
was applied. The policies cap SMS at five a day. Hot users send hundreds of ``Go`` in
waves through three processes (each wave lets ``ping`` enter again), cold users one each,
while a process is killed every two seconds. Whatever process applies a user's events,
with whatever cap slots it loaded: every ``Go`` is applied exactly once, every hot user
gets exactly five messages sent and every later attempt is suppressed by the cap, and
every cold user gets one.
"""

from __future__ import annotations

import random
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FreshDatabases
from tests.live.processes import Killer, Load, go, identify, wait_for
from tests.live.test_concurrency import COUNT, Cluster

PING = """
id: ping
name: Ping
trigger: {event: Go}
entry: {re_entry: always}
start: ping
steps:
  ping:
    send: {channel: sms, content: {text: "ping {{ message_id }}"}}
    next: end
"""
POLICIES = """
timezone: UTC
frequency_caps:
  - {channel: sms, limit: 5, per: 1d}
"""
LIMIT = 5
WAVES, PER_WAVE = 12, 25


@pytest.fixture
def cluster(tmp_path: Path, fresh_databases: FreshDatabases) -> Iterator[Cluster]:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "ping.yaml").write_text(textwrap.dedent(PING))
    (tmp_path / "journeys" / "count.yaml").write_text(textwrap.dedent(COUNT))
    (tmp_path / "journeys" / "policies.yaml").write_text(textwrap.dedent(POLICIES))
    made = Cluster(tmp_path, fresh_databases.new("postgresql"), 3)
    made.start()
    yield made
    made.stop()


def test_caps_hold_across_processes_killed_mid_run(cluster: Cluster) -> None:
    load = Load(cluster.engines, threads=20)
    hot = [f"hot{i}" for i in range(3)]
    cold = [f"cold{i}" for i in range(150)]
    load.send([identify(u, i) for i, u in enumerate(hot + cold)], batch=25)
    goes: Counter[str] = Counter(cold)

    def settled() -> bool:
        pending = cluster.scalar("SELECT count(*) FROM events WHERE status <> 'processed'")
        waiting = cluster.scalar(
            "SELECT count(*) FROM messages WHERE status NOT IN ('sent', 'suppressed')"
        )
        return pending == 0 and waiting == 0

    with Killer(cluster.engines, seed=12) as killer:
        cold_done = threading.Thread(target=load.send, args=([go(u, 0) for u in cold],))
        cold_done.start()
        for wave in range(WAVES):
            stream = [go(u, wave * PER_WAVE + n) for u in hot for n in range(PER_WAVE)]
            random.Random(wave).shuffle(stream)
            load.send(stream, batch=5)
            goes.update({u: PER_WAVE for u in hot})
            assert wait_for(settled, timeout=60, every=0.1), cluster.logs()
        cold_done.join()
        killer.at_least(2)
    assert wait_for(settled, timeout=60, every=0.2), (
        cluster.rows("SELECT status, count(*) FROM events GROUP BY status"),
        cluster.rows("SELECT status, count(*) FROM messages GROUP BY status"),
        cluster.logs(),
    )
    accepted = len(load.accepted) - len(hot) - len(cold)  # the identifies left out
    print(f"\nkill -9: {killer.kills} processes killed; {accepted} Go events accepted")
    assert accepted == sum(goes.values())

    def per_user(sql: str) -> Counter[str]:
        return Counter(dict(cluster.rows(f"{sql} GROUP BY user_key")))

    counted = per_user("SELECT user_key, count(*) FROM runs WHERE journey_id = 'count'")
    assert counted == Counter({f"user:{u}": n for u, n in goes.items()})
    sent = per_user("SELECT user_key, count(*) FROM messages WHERE status = 'sent'")
    assert sent == Counter({f"user:{u}": LIMIT if u in hot else 1 for u in goes})
    capped = per_user(
        "SELECT user_key, count(*) FROM messages "
        "WHERE status = 'suppressed' AND reason = 'frequency_cap'"
    )
    tried = per_user("SELECT user_key, count(*) FROM runs WHERE journey_id = 'ping'")
    for user in hot:
        key = f"user:{user}"
        # A wave lets ping enter at least once: past the fifth, every attempt is refused.
        assert tried[key] >= WAVES and capped[key] == tried[key] - LIMIT, (key, tried, capped)
    assert set(capped) == {f"user:{u}" for u in hot}
    assert cluster.scalar("SELECT count(*) FROM dead_letters") == 0
