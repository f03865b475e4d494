"""The fuzz test: seeded random and mutated requests to every route of a real server, on
SQLite and PostgreSQL. No answer may be 5xx, every event answered 200 must be stored,
the rows must be what the answers said, and the engine must be able to apply every
event that was accepted (no dead letters).

The suite sends ``FUZZ_REQUESTS`` (1,500) per store; ``python benchmarks/fuzz_api.py``
runs the long version (10,000 and more per store) and prints the figures.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi.routing import APIRoute
from sqlalchemy import func, select

from engine.api import create_app
from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree
from engine.settings import Settings
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.schema import DeadLetter
from tests.api import fuzzing
from tests.api.support import serve
from tests.conftest import FreshDatabases

ROOT = Path(__file__).resolve().parents[2]
FUZZ_REQUESTS = int(os.environ.get("JOURNEY_FUZZ_REQUESTS", "1500"))
FUZZ_SEED = int(os.environ.get("JOURNEY_FUZZ_SEED", "7"))
CREDENTIALS = fuzzing.Credentials(
    write_key="wk-fuzz", admin_token="admin-fuzz", secret_key="secret-key-for-the-fuzz-run"
)


def fuzz_app(db: Database) -> tuple[object, set[str]]:
    settings = Settings(
        write_keys=[CREDENTIALS.write_key],
        admin_token=CREDENTIALS.admin_token,
        secret_key=CREDENTIALS.secret_key,
    )
    app = create_app(db, settings)
    routes = {
        route.path
        for route in app.routes
        if isinstance(route, APIRoute) and route.path.startswith(("/v1/", "/api/"))
    }
    return app, routes


def test_fuzz_no_5xx_and_no_lost_event(db: Database) -> None:
    deploy(db, SourceTree.from_directory(ROOT / "journeys"))
    app, routes = fuzz_app(db)
    with serve(app) as url:
        report = fuzzing.run(url, db, CREDENTIALS, FUZZ_SEED, FUZZ_REQUESTS)
    print(report.summary())
    assert report.server_errors == [], "\n".join(report.server_errors[:10])
    assert report.lost == [], report.lost[:10]
    assert report.stored_rows == report.reported_stored
    assert routes <= set(report.routes), routes - set(report.routes)  # every route was hit
    assert report.statuses[200] > FUZZ_REQUESTS // 5  # most of what is sent is fine
    assert len(report.promised) > FUZZ_REQUESTS // 2

    live = LiveEngine(db, secret_key=CREDENTIALS.secret_key)
    apply_until_idle(live)
    with db.transaction() as session:
        dead = list(session.scalars(select(DeadLetter.error).limit(5)))
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0, dead


def test_both_stores_answer_every_request_alike(fresh_databases: FreshDatabases) -> None:
    answers = {}
    for backend in ("sqlite", "postgresql"):
        db = Database(fresh_databases.new(backend))
        try:
            app, _routes = fuzz_app(db)
            with serve(app) as url:
                report = fuzzing.run(url, db, CREDENTIALS, FUZZ_SEED + 1, FUZZ_REQUESTS // 3)
            answers[backend] = report.answers
        finally:
            db.dispose()
    differing = [
        (index, sqlite, postgresql)
        for index, (sqlite, postgresql) in enumerate(
            zip(answers["sqlite"], answers["postgresql"], strict=True)
        )
        if sqlite != postgresql
    ]
    assert differing == []
