"""Several `journey run` processes on one database, under concurrent load, with kill -9.

Two journeys share the trigger ``Go``: ``flow`` (``re_entry: never``) sends an email, waits
3 s and sends an SMS; ``count`` (``re_entry: always``) ends at once, so its number of runs
says how many times each event was applied. Every scenario ends with the same checks:

- every accepted event applied exactly once (``count`` runs == accepted ``Go`` events),
  nothing pending, no timer left, no dead letter;
- each user exactly one ``flow`` run, completed, and exactly its two messages, sent once;
- settled within seconds of the last timer's due time.
"""

from __future__ import annotations

import random
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from tests.conftest import FreshDatabases
from tests.live.processes import EngineProcess, Killer, Load, go, identify, wait_for

FLOW = """
id: flow
name: Flow
trigger: {event: Go}
entry: {re_entry: never}
start: hello
steps:
  hello:
    send: {channel: email, content: {subject: "hi {{ user_id }}", html: "<p>hi</p>"}}
    next: pause
  pause: {wait: 3s, next: again}
  again:
    send: {channel: sms, content: {text: "again {{ message_id }}"}}
    next: end
"""
COUNT = """
id: count
name: Count
trigger: {event: Go}
entry: {re_entry: always}
start: done
steps:
  done:
    branch:
      - else: end
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "flow.yaml").write_text(textwrap.dedent(FLOW))
    (tmp_path / "journeys" / "count.yaml").write_text(textwrap.dedent(COUNT))
    return tmp_path


@pytest.fixture(params=["postgresql", "sqlite"])
def shared_url(request: pytest.FixtureRequest, fresh_databases: FreshDatabases) -> str:
    return fresh_databases.new(request.param)


class Cluster:
    """Several `journey run` processes on one database."""

    def __init__(self, root: Path, url: str, size: int) -> None:
        self.url = url
        self.engines = [EngineProcess(root, url, name=f"engine{i}") for i in range(size)]
        self.db: Engine | None = None

    def start(self) -> None:
        for engine in self.engines:  # all at once: each deploys the journeys as it starts
            engine.launch()
        for engine in self.engines:
            engine.wait_ready()
        self.db = create_engine(self.url, poolclass=NullPool)

    def stop(self) -> None:
        for engine in self.engines:
            engine.stop()
        if self.db is not None:
            self.db.dispose()

    def logs(self) -> str:
        return "\n".join(f"--- {e.log.name}\n{e.tail(1500)}" for e in self.engines)

    def scalar(self, sql: str) -> object:
        assert self.db is not None
        with self.db.connect() as connection:
            return connection.execute(text(sql)).scalar()

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        assert self.db is not None
        with self.db.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]


@pytest.fixture
def cluster_of(project: Path, shared_url: str) -> Iterator[Callable[[int], Cluster]]:
    made: list[Cluster] = []

    def make(size: int) -> Cluster:
        cluster = Cluster(project, shared_url, size)
        made.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


def settled(cluster: Cluster, goes: Counter[str]) -> bool:
    """Everything accepted is applied and every run is done."""
    pending = cluster.scalar("SELECT count(*) FROM events WHERE status <> 'processed'")
    timers = cluster.scalar("SELECT count(*) FROM timers")
    open_messages = cluster.scalar("SELECT count(*) FROM messages WHERE status <> 'sent'")
    sent = cluster.scalar("SELECT count(*) FROM messages")
    return pending == 0 and timers == 0 and open_messages == 0 and sent == 2 * len(goes)


def check_exactly_once(cluster: Cluster, load: Load, goes: Counter[str]) -> None:
    """The checks every scenario ends with (see the module docstring)."""
    accepted = load.accepted
    statuses = dict(cluster.rows("SELECT status, count(*) FROM events GROUP BY status"))
    assert statuses == {"processed": len(accepted)}, statuses
    assert cluster.scalar("SELECT count(*) FROM dead_letters") == 0, cluster.rows(
        "SELECT kind, ref, error FROM dead_letters LIMIT 5"
    )
    assert cluster.scalar("SELECT count(*) FROM timers") == 0
    counted = Counter(
        dict(
            cluster.rows(
                "SELECT user_key, count(*) FROM runs WHERE journey_id = 'count' GROUP BY user_key"
            )
        )
    )
    assert counted == Counter({f"user:{u}": n for u, n in goes.items()})
    flows = cluster.rows("SELECT user_key, status FROM runs WHERE journey_id = 'flow'")
    assert sorted(flows) == sorted((f"user:{u}", "completed") for u in goes)
    messages = Counter(cluster.rows("SELECT user_key, step, channel, status FROM messages"))
    expected = Counter()
    for user in goes:
        expected[(f"user:{user}", "hello", "email", "sent")] += 1
        expected[(f"user:{user}", "again", "sms", "sent")] += 1
    assert messages == expected
    # The journey counters (written by triggers in every process's transactions, folded by
    # every process meanwhile, some killed mid-fold) say the same, exactly.
    n = len(goes)
    assert journey_counters(cluster) == {
        ("count", "entered", "", "", ""): sum(goes.values()),
        ("count", "status", "", "", "completed"): sum(goes.values()),
        ("count", "reached", "done", "", ""): sum(goes.values()),
        ("count", "visits", "done", "", ""): sum(goes.values()),
        ("flow", "entered", "", "", ""): n,
        ("flow", "status", "", "", "completed"): n,
        **{("flow", "reached", step, "", ""): n for step in ("hello", "pause", "again")},
        **{("flow", "visits", step, "", ""): n for step in ("hello", "pause", "again")},
        ("flow", "message", "hello", "email", "sent"): n,
        ("flow", "message", "again", "sms", "sent"): n,
    }


def journey_counters(cluster: Cluster) -> dict[tuple[str, ...], int]:
    """The counters and their deltas not folded yet, summed; zeros left out."""
    key = "journey_id, metric, step, channel, status"
    rows = cluster.rows(
        f"SELECT {key}, SUM(n) FROM (SELECT {key}, n FROM stat_counters UNION ALL "
        f"SELECT {key}, n FROM stat_deltas) counted GROUP BY {key}"
    )
    return {tuple(map(str, row[:-1])): round(float(str(row[-1]))) for row in rows if row[-1]}


def settle(cluster: Cluster, load: Load, goes: Counter[str], within: float) -> float:
    """Wait until settled; returns how long after the last timer came due that was."""
    assert wait_for(lambda: settled(cluster, goes), timeout=within + 60, every=0.2), (
        cluster.rows("SELECT status, count(*) FROM events GROUP BY status"),
        cluster.rows("SELECT status, count(*) FROM messages GROUP BY status"),
        cluster.scalar("SELECT count(*) FROM timers"),
        cluster.logs(),
    )
    done = datetime.now(UTC)
    last_entry = cluster.scalar("SELECT max(entered_at) FROM runs WHERE journey_id = 'flow'")
    assert isinstance(last_entry, datetime | str)
    if isinstance(last_entry, str):  # SQLite hands back text
        last_entry = datetime.fromisoformat(last_entry)
    last_due = last_entry.replace(tzinfo=last_entry.tzinfo or UTC) + timedelta(seconds=3)
    late = (done - last_due).total_seconds()
    messages = cluster.scalar("SELECT count(*) FROM messages")
    print(
        f"\n{len(cluster.engines)} process(es): {len(load.accepted)} events, {messages} messages,"
        f" {load.retries} requests retried; settled {late:.1f} s after the last timer came due"
    )
    assert late <= within, f"settled {late:.1f} s after the last timer came due"
    return late


def test_hot_users_do_not_stall_one_process(cluster_of: Callable[[int], Cluster]) -> None:
    """1,000 concurrent triggers for each of four hot users, beside cold users with one."""
    cluster = cluster_of(1)
    load = Load(cluster.engines, threads=50)
    hot = [f"hot{i}" for i in range(4)]
    cold = [f"cold{i}" for i in range(100)]
    load.send([identify(u, i) for i, u in enumerate(hot + cold)], batch=20)
    goes: Counter[str] = Counter()
    cold_done = threading.Thread(target=load.send, args=([go(u, 0) for u in cold],))
    cold_done.start()
    for user in hot:
        load.send([go(user, n) for n in range(1000)])
        goes[user] = 1000
    cold_done.join()
    goes.update(cold)
    # A user who shows up later is applied promptly, whatever the others' backlog was.
    load.send([identify("late", 999)])
    assert wait_for(
        lambda: cluster.scalar("SELECT count(*) FROM profiles WHERE user_key = 'user:late'"),
        timeout=5,
    ), cluster.logs()
    settle(cluster, load, goes, within=10)
    check_exactly_once(cluster, load, goes)


def test_three_processes_apply_each_event_once(cluster_of: Callable[[int], Cluster]) -> None:
    cluster = cluster_of(3)
    load = Load(cluster.engines, threads=30)
    users = [f"u{i}" for i in range(2000)]
    hot = users[:3]
    load.send([identify(u, i) for i, u in enumerate(users)], batch=50)
    goes: Counter[str] = Counter(users)
    stream = [go(u, 0) for u in users]
    random.Random(6).shuffle(stream)
    burst = threading.Thread(target=load.send, args=(stream,), kwargs={"batch": 25})
    burst.start()
    load.send([go(u, n) for u in hot for n in range(1, 201)])
    burst.join()
    goes.update({u: 200 for u in hot})
    settle(cluster, load, goes, within=15)
    check_exactly_once(cluster, load, goes)


def test_kill_9_every_two_seconds_loses_and_repeats_nothing(
    cluster_of: Callable[[int], Cluster],
) -> None:
    cluster = cluster_of(3)
    load = Load(cluster.engines, threads=20)
    users = [f"k{i}" for i in range(600)]
    with Killer(cluster.engines, seed=9) as killer:
        goes: Counter[str] = Counter(users)
        for start in range(0, len(users), 100):
            chunk = users[start : start + 100]
            load.send([identify(u, start + i) for i, u in enumerate(chunk)], batch=10)
            load.send([go(u, 0) for u in chunk], batch=10)
            load.send([go(u, n) for u in chunk[:2] for n in range(1, 51)])
            goes.update({u: 50 for u in chunk[:2]})
        time.sleep(4)  # keep killing while the last timers come due
        killer.at_least(3)
    assert killer.kills >= 3
    print(f"\nkill -9: {killer.kills} processes killed")
    settle(cluster, load, goes, within=30)
    check_exactly_once(cluster, load, goes)
