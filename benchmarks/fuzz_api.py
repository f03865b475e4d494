"""The long fuzz run of the HTTP API, on SQLite and PostgreSQL.

    python benchmarks/fuzz_api.py [--requests N] [--seeds 1,2] [--postgres-url URL] [--only sqlite]

Sends N seeded random and mutated requests per seed and store (``tests/api/fuzzing.py``)
to a real server, then applies every accepted event with the live engine. Prints, per
store: requests, answers by status, 5xx, events answered 200, events lost, rows against
what the answers said was stored, dead letters, and requests per second. Exits 1 if any
answer was 5xx, any event answered 200 is missing, or the engine dead-lettered one.
The suite's ``tests/api/test_fuzz.py`` runs the same fuzzer, shorter.

PostgreSQL: ``--postgres-url`` names a server whose user may CREATE DATABASE (default
``JOURNEY_TEST_POSTGRES_URL`` or postgres@127.0.0.1:5432/test); a throwaway database is
created and dropped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import fresh_postgres_database  # noqa: E402
from engine.live.engine import LiveEngine, apply_until_idle  # noqa: E402
from engine.project import SourceTree  # noqa: E402
from engine.store.database import Database  # noqa: E402
from engine.store.deployments import deploy  # noqa: E402
from engine.store.schema import DeadLetter  # noqa: E402
from tests.api import fuzzing  # noqa: E402
from tests.api.support import serve  # noqa: E402
from tests.api.test_fuzz import CREDENTIALS, fuzz_app  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="journey-fuzz-") as directory:
        yield f"sqlite:///{directory}/journey.db"


def postgres_url(admin_url: str) -> AbstractContextManager[str]:
    return fresh_postgres_database(admin_url, "fuzz")


def fuzz_store(url: str, requests: int, seeds: list[int]) -> bool:
    db = Database(url)
    ok = True
    try:
        deploy(db, SourceTree.from_directory(ROOT / "journeys"))
        app, routes = fuzz_app(db)
        total = fuzzing.FuzzReport()
        started = time.perf_counter()
        with serve(app) as base:
            for seed in seeds:
                report = fuzzing.run(base, db, CREDENTIALS, seed, requests)
                print(f"  seed {seed}: {report.summary()}")
                total.requests += report.requests
                total.statuses.update(report.statuses)
                total.routes.update(report.routes)
                total.server_errors += report.server_errors
                total.promised |= report.promised
                total.lost += report.lost
                total.reported_stored += report.reported_stored
                total.stored_rows += report.stored_rows
        elapsed = time.perf_counter() - started
        applied = time.perf_counter()
        apply_until_idle(LiveEngine(db, secret_key=CREDENTIALS.secret_key), rounds=100_000)
        applied = time.perf_counter() - applied
        with db.transaction() as session:
            dead = session.scalar(select(func.count()).select_from(DeadLetter)) or 0
        missed = sorted(routes - set(total.routes))
        print(f"  total: {total.summary()}")
        print(
            f"  {total.requests / elapsed:,.0f} requests/s; engine applied the accepted events "
            f"in {applied:.1f} s, dead letters: {dead}; routes not reached: {missed or 'none'}"
        )
        for line in total.server_errors[:10]:
            print(f"  5xx: {line}")
        ok = not (
            total.server_errors
            or total.lost
            or dead
            or missed
            or total.stored_rows != total.reported_stored
        )
    finally:
        db.dispose()
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="per seed and store")
    parser.add_argument("--seeds", default="1,2", help="comma-separated seeds")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--postgres-url", default=os.environ.get("JOURNEY_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    ok = True
    stores = {"sqlite": sqlite_url, "postgresql": lambda: postgres_url(args.postgres_url)}
    for name, make in stores.items():
        if args.only and name != args.only:
            continue
        print(f"{name}: {args.requests:,} requests x seeds {seeds}")
        with make() as url:
            ok = fuzz_store(url, args.requests, seeds) and ok
    print("OK: no 5xx, no lost event" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
