"""What a journey report costs on many runs, from the counters and from a scan.

    python benchmarks/stats_read.py [--postgres ADMIN_URL] [--runs N] [--quick]

In a fresh PostgreSQL database: the example journeys deployed, then ``--runs`` runs of
``welcome_series`` (a third converted) and two messages each written in bulk with
``INSERT ... SELECT generate_series`` twice: into copies of the tables without triggers
(the baseline: the plain write), then into the tables. Then one report (the funnel, the
conversions, the attribution) read three ways. Prints, as ``name: value unit``:

- ``bulk write, no triggers`` / ``bulk write, counted``: runs and messages written,
  and the ratio (what maintaining the counters costs a bulk writer);
- ``fold``: moving every delta into the counters (and a report read before the dead rows
  left in ``stat_deltas`` are vacuumed);
- ``report from counters`` (folded, and with every delta still unfolded) and
  ``report from a scan`` (``--recount``), and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import fresh_postgres_database  # noqa: E402
from engine.analytics.deployed import journey_report  # noqa: E402
from engine.project import SourceTree  # noqa: E402
from engine.store.database import Database  # noqa: E402
from engine.store.deployments import DeployedCatalog, deploy  # noqa: E402
from engine.store.stat_counters import fold  # noqa: E402

RUNS = """
INSERT INTO {runs} (run_id, user_key, journey_id, version, status, step, entered_at, ended_at,
                  converted_at, goal_until, state, updated_at)
SELECT 'r' || i, 'user:u' || i, 'welcome_series', :version,
       CASE WHEN i % 10 = 0 THEN 'active' ELSE 'completed' END,
       CASE WHEN i % 10 = 0 THEN 'wait_for_first_order' END,
       now() - interval '3 days', now(), CASE WHEN i % 3 = 0 THEN now() - interval '1 day' END,
       CASE WHEN i % 3 <> 0 AND i % 10 = 0 THEN now() + interval '4 days' END,
       json_build_object('visits', json_build_object('welcome_email', 1, 'wecom_tip', 1,
                         'wait_for_first_order', 1)),
       now()
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) i
"""
MESSAGES = """
INSERT INTO {messages} (message_id, run_id, user_key, journey_id, version, step, channel, attempt,
                      status, send_at, tries, created_at, updated_at)
SELECT 'm' || i || '-' || k, 'r' || i, 'user:u' || i, 'welcome_series', :version,
       CASE k WHEN 0 THEN 'welcome_email' ELSE 'wecom_tip' END,
       CASE k WHEN 0 THEN 'email' ELSE 'wecom' END, 0,
       CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'sent' END,
       now() - interval '2 days' - k * interval '1 hour', 1, now(), now()
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) i
CROSS JOIN generate_series(0, 1) k
"""


def timed(label: str, work: int, unit: str, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    print(f"{label}: {seconds:.2f} s ({work / seconds:,.0f} {unit}/s)", flush=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="a tenth of the runs")
    args = parser.parse_args()
    runs = args.runs // 10 if args.quick else args.runs
    with fresh_postgres_database(args.postgres, "bench_stats") as url:
        db = Database(url)
        deploy(db, SourceTree.from_directory(ROOT / "journeys"))
        catalog = DeployedCatalog(db)
        with db.transaction() as session:
            catalog.refresh(session)
        version = catalog.current.journeys["welcome_series"].version

        def write(suffix: str) -> None:
            tables = {"runs": "runs" + suffix, "messages": "messages" + suffix}
            with db.transaction() as session:
                bounds = {"first": 1, "last": runs, "version": version}
                session.execute(text(MESSAGES.format(**tables)), bounds)  # the touches first
                session.execute(text(RUNS.format(**tables)), bounds)

        with db.transaction() as session:
            for table in ("runs", "messages"):
                session.execute(text(f"CREATE TABLE {table}_plain (LIKE {table} INCLUDING ALL)"))
        rows = runs * 3  # each run and its two messages
        plain = timed("bulk write, no triggers", rows, "rows", lambda: write("_plain"))
        counted_write = timed("bulk write, counted", rows, "rows", lambda: write(""))
        print(f"ratio, counted / no triggers: {counted_write / plain:.2f}")
        with db.transaction() as session:
            deltas = int(session.scalar(text("SELECT COUNT(*) FROM stat_deltas")) or 0)
        print(f"deltas written: {deltas:,} ({deltas / runs:.1f} per run with its messages)")
        now = datetime.now(UTC)

        def report(recount: bool) -> None:
            with db.transaction() as session:
                journey_report(session, catalog, "welcome_series", now, recount=recount)

        timed("report from counters, deltas unfolded", 1, "reports", lambda: report(False))
        timed("fold", deltas, "deltas", lambda: fold(db))
        timed("report from counters, before the deltas' table is vacuumed", 1, "reports",
              lambda: report(False))  # fmt: skip
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM stat_deltas")  # what autovacuum does soon
        counted = min(
            timed("report from counters", 1, "reports", lambda: report(False)) for _ in range(3)
        )
        scanned = timed("report from a scan (--recount)", 1, "reports", lambda: report(True))
        with db.transaction() as session:
            checked = journey_report(session, catalog, "welcome_series", now).as_json()
            recounted = journey_report(
                session, catalog, "welcome_series", now, recount=True
            ).as_json()
        same = checked == recounted
        print(f"runs: {runs:,}; the two reports agree: {same}")
        print(f"ratio, scan / counters: {scanned / counted:,.0f}")
        db.dispose()
        return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
