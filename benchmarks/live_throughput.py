"""Live engine throughput: events stored through the ingest path, then applied by the engine.

    python benchmarks/live_throughput.py [--events N] [--users N] [--database-url URL]

Prints events per second for ingest (validate and store, batches of 100) and for the
engine (apply the events, fire the first timers, deliver the outbox to the local sink),
and, measured in the same run, a baseline: the same rows written by one plain bulk
INSERT, so the ratio says what the engine costs beyond writing the events down.
Without --database-url it uses a throwaway SQLite file; a PostgreSQL URL must name an
empty database of its own (``createdb journey_bench``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from engine.live.engine import LiveEngine
from engine.project import SourceTree
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor, insert_events
from engine.store.schema import Message, StoredEvent

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["Product Viewed", "Product Viewed", "Product Added", "Order Completed", "Signed Up"]


def stream(events: int, users: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for u in range(users):
        items.append(
            {
                "type": "identify",
                "userId": f"u{u}",
                "messageId": f"id-{u}",
                "traits": {
                    "phone": f"+86138{u:08d}",
                    "email": f"u{u}@example.com",
                    "push_token": f"t{u}",
                    "subscriptions": {"sms": True},
                },
            }
        )
    for n in range(events - users):
        items.append(
            {
                "type": "track",
                "userId": f"u{n % users}",
                "event": NAMES[n % len(NAMES)],
                "properties": {"category": "beauty", "order_id": f"o{n}"},
                "messageId": f"m{n}",
            }
        )
    return items


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

    def __call__(self) -> datetime:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        db = Database(url)
        with db.transaction() as session:
            if session.scalar(select(func.count()).select_from(StoredEvent)):
                raise SystemExit(f"{url} is not empty: give the benchmark a database of its own")
        clock = Clock()
        deploy(db, SourceTree.from_directory(ROOT / "journeys"), now=clock())
        items = stream(args.events, args.users)

        started = time.perf_counter()
        ingest = Ingestor(db)
        for i in range(0, len(items), 100):
            ingest.ingest(items[i : i + 100], now=clock())
        ingest_s = time.perf_counter() - started

        engine = LiveEngine(db, clock=clock)
        started = time.perf_counter()
        while (work := engine.apply()).any or work.more:
            pass
        apply_s = time.perf_counter() - started
        clock.now += timedelta(hours=1)  # the first waits come due
        started = time.perf_counter()
        while (work := engine.run_once()).any or work.more:
            pass
        timers_s = time.perf_counter() - started
        with db.transaction() as session:
            sent = session.scalar(
                select(func.count()).select_from(Message).where(Message.status == "sent")
            )
            rows = [
                {
                    c: getattr(e, c)
                    for c in (
                        "message_id",
                        "type",
                        "user_id",
                        "anonymous_id",
                        "user_key",
                        "partition",
                        "timestamp",
                        "received_at",
                        "payload",
                    )
                }
                | {"message_id": "copy-" + e.message_id, "status": "pending"}
                for e in session.scalars(select(StoredEvent))
            ]
        started = time.perf_counter()
        with db.transaction() as session:
            insert_events(session, rows)
        baseline_s = time.perf_counter() - started
        with db.transaction() as session:
            session.execute(delete(StoredEvent).where(StoredEvent.message_id.like("copy-%")))
        db.dispose()
    backend = url.split(":", 1)[0]
    n = len(items)
    print(f"backend                     {backend}")
    print(f"events / users              {n:,} / {args.users:,}")
    print(f"ingest (validate + store)   {ingest_s:6.2f} s  {n / ingest_s:9,.0f} events/s")
    print(f"engine: apply events        {apply_s:6.2f} s  {n / apply_s:9,.0f} events/s")
    print(f"engine: timers + outbox     {timers_s:6.2f} s  ({sent:,} messages sent in all)")
    print(f"baseline: one bulk INSERT   {baseline_s:6.2f} s  {n / baseline_s:9,.0f} rows/s")
    print(f"ratio ingest/baseline       {ingest_s / baseline_s:6.1f}x")
    print(f"ratio apply/baseline        {apply_s / baseline_s:6.1f}x")


if __name__ == "__main__":
    main()
