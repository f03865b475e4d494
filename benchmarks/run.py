"""The distributed engine's speed, measured: each figure on a line of its own.

    python benchmarks/run.py [--postgres ADMIN_URL] [--quick]

Starts what it measures on this machine: a throwaway redis-server, a fresh PostgreSQL
database (created with ADMIN_URL's user, dropped at the end), ``journey api`` (two
server processes), ``journey worker`` (two worker processes) and ``journey scheduler``.
Messages go to the local sink. Prints, as ``name: value unit``:

- ``plain insert``: the same event rows written with psycopg's COPY (the baseline);
- ``ingest``: events stored through HTTP in batches of 100, durably committed;
- ``celery no-op``: a bare Celery task's round trip on the same broker (the baseline);
- ``end to end``: events from the API to the sink (applied, message rendered and sent);
- ``latency p50`` / ``latency p99``: from an event accepted to its message sent, at light load;
- ``timers fired``: due timers fired with a million pending, and the workers' memory then;
- each figure's ratio to its baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from redis import Redis
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import fresh_postgres_database  # noqa: E402
from engine.project import SourceTree  # noqa: E402
from engine.store.database import Database  # noqa: E402
from engine.store.deployments import deploy  # noqa: E402
from engine.store.ingest import COLUMNS, json_text  # noqa: E402
from engine.store.partitions import partition_of  # noqa: E402

WRITE_KEY = "bench-write-key"
ADMIN = "bench-admin-token"
SECRET = "bench-secret-key-0123456789"
JOURNEYS = {
    "ping": """
        id: ping
        name: Ping
        trigger: {event: Ping}
        entry: {re_entry: always}
        start: say
        steps:
          say:
            send: {channel: sms, content: {text: "ping {{ message_id }}"}}
            next: end
    """,
    "nap": """
        id: nap
        name: Nap
        trigger: {event: Nap}
        start: rest
        steps:
          rest: {wait: 1h, next: end}
    """,
}


def figure(name: str, value: float, unit: str = "") -> None:
    shown = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    print(f"{name}: {shown} {unit}".rstrip(), flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- servers ------------------------------------------------------------------------------


@contextmanager
def redis_server(root: Path) -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(root), "--logfile", str(root / "redis.log")],
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = Redis.from_url(url)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except Exception:
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(10)


class Processes:
    """The stack's processes; all stopped together."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str, module: str = "engine.cli") -> subprocess.Popen[bytes]:
        path = self.root / f"{name}.log"
        LOGS.append(path)
        log = path.open("ab")
        child = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=self.env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append((name, child))
        return child

    def stop(self, name: str | None = None) -> None:
        for each, child in list(self.children):
            if name is None or each == name:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGTERM)
                    try:
                        child.wait(20)
                    except subprocess.TimeoutExpired:
                        os.killpg(child.pid, signal.SIGKILL)
                self.children.remove((each, child))

    def rss_mb(self, name: str) -> float:
        """Resident memory of ``name``'s processes and their children, in MB."""
        total = 0
        for each, child in self.children:
            if each != name:
                continue
            pids = subprocess.run(
                ["pgrep", "-g", str(child.pid)], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024


LOGS: list[Path] = []


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in LOGS
            )
            raise SystemExit(f"benchmark: {what} did not happen within {timeout:.0f} s\n{tails}")
        time.sleep(0.05)


# -- load -------------------------------------------------------------------------------


def track(user: str, event: str) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "messageId": str(uuid.uuid4())}


def identify(user: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user,
        "traits": {"phone": "+8613800000000"},
        "messageId": str(uuid.uuid4()),
    }


def post_batches(url: str, batches: list[list[dict[str, Any]]], threads: int) -> float:
    """POST every batch to /v1/batch from ``threads`` keep-alive clients; seconds taken."""
    local = threading.local()

    def post(batch: list[dict[str, Any]]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(auth=(WRITE_KEY, ""), timeout=60)
        body = orjson.dumps({"batch": batch})
        for _ in range(5):
            reply = client.post(
                f"{url}/v1/batch", content=body, headers={"Content-Type": "application/json"}
            )
            if reply.status_code == 200:
                return
        raise SystemExit(f"benchmark: the API answered {reply.status_code}: {reply.text[:200]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, batches))
    return time.perf_counter() - started


# -- the measurements -------------------------------------------------------------------


def plain_insert(database_url: str, rows: list[dict[str, Any]]) -> float:
    """COPY ``rows`` into a table shaped like ``events``; rows per second."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn) as connection:
        connection.execute("CREATE TABLE bench_events (LIKE events INCLUDING ALL)")
        connection.commit()
        started = time.perf_counter()
        columns = ", ".join(COLUMNS)
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY bench_events ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row([json_text(row[c]) if c == "payload" else row[c] for c in COLUMNS])
        connection.commit()
        elapsed = time.perf_counter() - started
        connection.execute("DROP TABLE bench_events")
        connection.commit()
    return len(rows) / elapsed


def event_rows(count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = []
    for i in range(count):
        message = track(f"u{i % 5000}", "Ping")
        key = f"user:u{i % 5000}"
        rows.append({
            "message_id": message["messageId"], "type": "track", "user_id": f"u{i % 5000}",
            "anonymous_id": None, "user_key": key, "partition": partition_of(key),
            "timestamp": now, "received_at": now, "payload": message, "status": "pending",
        })  # fmt: skip
    return rows


def celery_noop(broker: str, root: Path, count: int) -> float:
    """A bare Celery task round trip on the same broker: tasks per second."""
    env = dict(os.environ, NOOP_BROKER_URL=broker, NOOP_COUNTER_URL=broker,
               PYTHONPATH=str(ROOT / "benchmarks"))  # fmt: skip
    processes = Processes(root, env)
    processes.start("noop", "-A", "noop_app", "worker", "--concurrency", "2", "--loglevel",
                    "warning", "--without-gossip", "--without-mingle", module="celery")  # fmt: skip
    os.environ.update(NOOP_BROKER_URL=broker, NOOP_COUNTER_URL=broker)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from noop_app import app, noop

    counter = Redis.from_url(broker)
    try:
        noop.apply_async()
        wait_until(lambda: int(counter.get("noop:done") or 0) >= 1, 60, "the no-op worker")
        counter.delete("noop:done")
        started = time.perf_counter()
        for _ in range(count):
            noop.apply_async()
        wait_until(lambda: int(counter.get("noop:done") or 0) >= count, 300, "no-op tasks")
        return count / (time.perf_counter() - started)
    finally:
        counter.close()
        app.close()
        processes.stop()


def sent_count(db: Any) -> int:
    with db.connect() as connection:
        return int(connection.execute(
            text("SELECT count(*) FROM messages WHERE status = 'sent'")).scalar() or 0)  # fmt: skip


def seed_timers(database_url: str, db: Any, api: str, pending: int, due: int) -> None:
    """``pending`` runs waiting on a timer (``due`` of them due now), cloned from one real
    run with COPY: as many timers as a large deployment holds, without hours of setup."""
    post_batches(api, [[track("seed", "Nap")]], 1)
    wait_until(lambda: _scalar(db, "SELECT count(*) FROM timers") == 1, 60, "the seed timer")
    with db.connect() as connection:
        run = (
            connection.execute(text("SELECT * FROM runs WHERE journey_id = 'nap'")).mappings().one()
        )
        timer = connection.execute(text("SELECT * FROM timers")).mappings().one()
    state_text = orjson.dumps(run["state"]).decode()
    now = datetime.now(UTC)
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        with cursor.copy(
            "COPY runs (run_id, user_key, journey_id, version, status, step, entered_at, "
            "state, updated_at) FROM STDIN"
        ) as copy:
            for i in range(pending):
                state = state_text.replace(timer["timer_id"], f"tmr_b{i}")
                copy.write_row([f"run_b{i}", f"user:b{i}", run["journey_id"], run["version"],
                                "active", run["step"], now, state, now])  # fmt: skip
        with cursor.copy(
            "COPY timers (timer_id, seq, run_id, user_key, due_at, partition) FROM STDIN"
        ) as copy:
            for i in range(pending):
                due_at = now if i < due else now + timedelta(hours=1)
                copy.write_row([f"tmr_b{i}", i, f"run_b{i}", f"user:b{i}", due_at,
                                partition_of(f"user:b{i}")])  # fmt: skip
        connection.commit()


def _scalar(db: Any, sql: str) -> int:
    with db.connect() as connection:
        return int(connection.execute(text(sql)).scalar() or 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "JOURNEY_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="admin URL of a PostgreSQL server whose user may CREATE DATABASE",
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the work")
    parser.add_argument(
        "--only", default="ingest,e2e,timers", help="phases to run: ingest, e2e, timers"
    )
    parser.add_argument("--loglevel", default="warning", help="the workers' log level")
    args = parser.parse_args()
    phases = set(args.only.split(","))
    scale = 10 if args.quick else 1
    ingest_events = 100_000 // scale
    e2e_events = 20_000 // scale
    timers_pending, timers_due = 1_000_000 // scale, 100_000 // scale

    root = Path(tempfile.mkdtemp(prefix="journey-bench-"))
    (root / "journeys").mkdir()
    for name, source in JOURNEYS.items():
        (root / "journeys" / f"{name}.yaml").write_text(textwrap.dedent(source))
    try:
        with (
            redis_server(root) as broker,
            fresh_postgres_database(args.postgres, "journey_bench") as database_url,
        ):
            run(
                root,
                broker,
                database_url,
                ingest_events,
                e2e_events,
                timers_pending,
                timers_due,
                phases,
                args.loglevel,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(
    root: Path,
    broker: str,
    database_url: str,
    ingest_events: int,
    e2e_events: int,
    timers_pending: int,
    timers_due: int,
    phases: set[str],
    loglevel: str,
) -> None:
    setup = Database(database_url)
    deploy(setup, SourceTree.from_directory(root / "journeys"))
    setup.dispose()
    db = create_engine(database_url, poolclass=NullPool)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = dict(os.environ, JOURNEY_DATABASE_URL=database_url, JOURNEY_BROKER_URL=broker,
               JOURNEY_WRITE_KEYS=WRITE_KEY, JOURNEY_ADMIN_TOKEN=ADMIN,
               JOURNEY_SECRET_KEY=SECRET)  # fmt: skip
    processes = Processes(root, env)
    try:
        processes.start("api", "api", "--workers", "2", "--port", str(port))
        wait_until(lambda: _up(api), 60, "the API")
        if "ingest" in phases:
            baseline = plain_insert(database_url, event_rows(ingest_events))
            figure("plain insert", baseline, "rows/s")
            batches = [[track(f"i{i % 5000}", "Viewed") for i in range(n, n + 100)]
                       for n in range(0, ingest_events, 100)]  # fmt: skip
            post_batches(api, batches[:20], 8)  # warm up
            elapsed = post_batches(api, batches[20:], 16)
            ingest = (ingest_events - 2000) / elapsed
            figure("ingest", ingest, "events/s")
            figure("ingest ratio", ingest / baseline, "x plain insert")
        noop = 0.0
        if "e2e" in phases:
            noop = celery_noop(broker, root, 5000 // (1 if e2e_events >= 20_000 else 2))
            figure("celery no-op", noop, "tasks/s")
        processes.start("worker", "worker", "--concurrency", "2", "--loglevel", loglevel)
        processes.start("scheduler", "scheduler")
        if "e2e" in phases:
            people = ["warm", *(f"e{i}" for i in range(2000)), *(f"l{i}" for i in range(200))]
            post_batches(api, [[identify(u) for u in people[n : n + 100]]
                               for n in range(0, len(people), 100)], 4)  # fmt: skip
            wait_until(lambda: _scalar(db, PENDING) == 0, 300, "the profiles")
            post_batches(api, [[track("warm", "Ping")]], 1)
            wait_until(lambda: sent_count(db) >= 1, 120, "the first message")
            before = sent_count(db)
            pings = [[track(f"e{i % 2000}", "Ping") for i in range(n, n + 100)]
                     for n in range(0, e2e_events, 100)]  # fmt: skip
            started = time.perf_counter()
            post_batches(api, pings, 8)
            wait_until(lambda: sent_count(db) >= before + e2e_events, 600, "end to end")
            end_to_end = e2e_events / (time.perf_counter() - started)
            figure("end to end", end_to_end, "events/s")
            figure("end to end ratio", end_to_end / noop, "x celery no-op")
            latencies = light_load_latency(api, db)
            figure("latency p50", statistics.median(latencies), "ms")
            figure("latency p99", statistics.quantiles(latencies, n=100)[98], "ms")
        if "timers" in phases:
            seed_timers(database_url, db, api, timers_pending, timers_due)
            left = timers_pending - timers_due + 1  # the seed run's own timer stays
            started = time.perf_counter()
            wait_until(lambda: _scalar(db, "SELECT count(*) FROM timers") <= left, 900, "timers")
            figure("timers fired", timers_due / (time.perf_counter() - started), "/s")
            figure("timers pending", timers_pending, "")
            figure("worker rss", processes.rss_mb("worker"), "MB")
    finally:
        processes.stop()
        db.dispose()


def _up(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


PENDING = "SELECT count(*) FROM events WHERE status = 'pending'"
LIGHT_SENT = "SELECT count(*) FROM messages WHERE status = 'sent' AND user_key LIKE 'user:l%'"
LIGHT_TIMES = (
    "SELECT e.received_at, m.send_at FROM messages m JOIN events e ON e.user_key = m.user_key "
    "AND e.type = 'track' WHERE m.user_key LIKE 'user:l%'"
)


def light_load_latency(api: str, db: Any, count: int = 200) -> list[float]:
    """Events sent one at a time, 20 ms apart; ms from each event's receipt by the API (its
    ``received_at``) to its message handed to the provider (the message's ``send_at``)."""
    with httpx.Client(auth=(WRITE_KEY, ""), timeout=30) as client:
        for i in range(count):
            reply = client.post(f"{api}/v1/track", json=track(f"l{i}", "Ping"))
            assert reply.status_code == 200, reply.text
            time.sleep(0.02)
    wait_until(lambda: _scalar(db, LIGHT_SENT) >= count, 120, "the light load's messages")
    with db.connect() as connection:
        rows = connection.execute(text(LIGHT_TIMES)).all()
    return [(sent - received).total_seconds() * 1000 for received, sent in rows]


if __name__ == "__main__":
    main()
