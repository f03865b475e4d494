"""The Alembic revisions build exactly the schema that schema.py declares, on both backends."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from engine.store import migrate
from engine.store.database import create_db_engine
from engine.store.migrate import current_revision, head_revision, upgrade
from engine.store.schema import Base

ROOT = Path(__file__).resolve().parents[2]


def differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def describe(engine: Engine) -> dict[str, Any]:
    """Everything reflection tells about the tables, in a comparable form."""
    inspector = inspect(engine)
    tables: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        tables[table] = {
            "columns": [
                (
                    c["name"],
                    str(c["type"]),
                    c["nullable"],
                    c.get("default"),
                    c.get("autoincrement"),
                )
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table),
            "fks": sorted(
                (fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"])
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            ),
            "uniques": sorted(
                (uq["name"], tuple(uq["column_names"]))
                for uq in inspector.get_unique_constraints(table)
            ),
        }
    return tables


def test_migrated_database_matches_the_models(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        upgrade(engine)
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_migrations_build_what_create_all_builds(
    database_url: str, make_database_url: Callable[[], str]
) -> None:
    migrated, created = create_db_engine(database_url), create_db_engine(make_database_url())
    try:
        upgrade(migrated)
        Base.metadata.create_all(created)
        assert describe(migrated) == describe(created)
        assert set(describe(migrated)) == set(Base.metadata.tables)
    finally:
        migrated.dispose()
        created.dispose()


def test_downgrade_to_base_and_back(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        upgrade(engine)
        migrate.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert differences(engine) == []
    finally:
        engine.dispose()


OPENERS = {
    # What the engine does: Database(url) migrates on open.
    "database": "from engine.store.database import Database\nDatabase(url).dispose()\n",
    # A bare SQLAlchemy engine (no BEGIN IMMEDIATE on SQLite): upgrade() must lock by itself.
    "plain-engine": (
        "from sqlalchemy import create_engine\n"
        "from engine.store.migrate import upgrade\n"
        "engine = create_engine(url, connect_args={'timeout': 30} if 'sqlite' in url else {})\n"
        "upgrade(engine)\nengine.dispose()\n"
    ),
}


@pytest.mark.parametrize("opener", OPENERS)
def test_concurrent_processes_migrate_one_database(database_url: str, opener: str) -> None:
    code = "import sys\nurl = sys.argv[1]\n" + OPENERS[opener]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, database_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], outputs
    engine = create_db_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_revisions_are_numbered_and_linear() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    revisions = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in revisions] == [f"{n:04d}" for n in range(1, len(revisions) + 1)]
    assert len(script.get_heads()) == 1
    assert migrate.next_revision_id() == f"{len(revisions) + 1:04d}"
    for rev in revisions:
        assert Path(rev.path).name.startswith(f"{rev.revision}_"), rev.path


def test_the_migrations_ship_in_the_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["engine"]
    package = ROOT / "engine"
    files = [
        path.relative_to(package).as_posix()
        for path in migrate.MIGRATIONS.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert "store/migrations/env.py" in files
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert unshipped == []


def test_0002_fills_in_the_partitions_of_existing_events_and_timers(database_url: str) -> None:
    from engine.store.partitions import PARTITIONS, partition_of

    engine = create_db_engine(database_url)
    try:
        upgrade(engine, "0001")
        at = "2026-03-01 10:00:00"
        with engine.begin() as connection:
            for seq, user, anonymous in ((1, "u1", None), (2, None, "a1"), (3, "u2", "a2")):
                connection.execute(
                    text(
                        "INSERT INTO events (seq, message_id, type, user_id, anonymous_id,"
                        " timestamp, received_at, payload, status)"
                        " VALUES (:seq, :mid, 'track', :user, :anon, :at, :at, '{}', 'pending')"
                    ),
                    {"seq": seq, "mid": f"m{seq}", "user": user, "anon": anonymous, "at": at},
                )
            connection.execute(
                text(
                    "INSERT INTO timers (timer_id, seq, run_id, user_key, due_at)"
                    " VALUES ('t1', 1, 'r1', 'anon:a1', :at)"
                ),
                {"at": at},
            )
        upgrade(engine)
        with engine.connect() as connection:
            events = connection.execute(
                text("SELECT seq, user_key, partition FROM events ORDER BY seq")
            ).all()
            timers = connection.execute(text("SELECT user_key, partition FROM timers")).all()
            partitions = connection.execute(text("SELECT count(*) FROM partitions")).scalar()
        keys = ["user:u1", "anon:a1", "user:u2"]
        assert [tuple(row) for row in events] == [
            (n + 1, key, partition_of(key)) for n, key in enumerate(keys)
        ]
        assert [tuple(row) for row in timers] == [("anon:a1", partition_of("anon:a1"))]
        assert partitions == PARTITIONS
    finally:
        engine.dispose()
