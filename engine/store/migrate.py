"""Schema migrations: Alembic revisions in ``engine/store/migrations``, run from code.

``upgrade(engine)`` brings a database to the newest revision (``upgrade head``). It is
safe to call from several processes (and threads) at once: the whole upgrade runs in one
transaction that first takes a lock (``pg_advisory_xact_lock`` on PostgreSQL, the write
lock via ``BEGIN IMMEDIATE`` on SQLite), so the first caller migrates and the rest wait,
then find the schema current and do nothing.

No alembic.ini is needed. To write the next revision, change ``schema.py`` and run::

    python -m engine.store.migrate revision "what changed"

against a database at head (``JOURNEY_DATABASE_URL``, default the embedded SQLite);
then read the generated file in ``migrations/versions`` and fix what autogenerate missed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Key of the PostgreSQL advisory lock held while migrating (any constant bigint will do).
ADVISORY_LOCK_KEY = 0x6A6F75726E6579  # "journey"

# Alembic keeps the running migration in module globals (``alembic.context``, ``alembic.op``),
# so two threads of one process must never run it at once, even on different databases.
_IN_PROCESS = threading.Lock()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the bundled migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")  # 0002_add_foo.py
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_lock(connection: Connection) -> None:
    """Serialise migrations: held until ``connection``'s transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        # create_db_engine already began with BEGIN IMMEDIATE; a plain engine has not yet
        # (pysqlite defers BEGIN), so take the write lock here before reading the version.
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and not getattr(dbapi, "in_transaction", True):
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (default the newest), in one locked transaction."""
    with _IN_PROCESS, engine.begin() as connection:
        upgrade_lock(connection)
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Step the schema back to ``revision`` (``base`` drops every table), like ``upgrade``."""
    with _IN_PROCESS, engine.begin() as connection:
        upgrade_lock(connection)
        command.downgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def next_revision_id() -> str:
    """``0002`` after ``0001``: revisions are numbered, so files sort in order."""
    script = ScriptDirectory.from_config(alembic_config())
    numbers = [int(rev.revision) for rev in script.walk_revisions() if rev.revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def main(argv: list[str]) -> int:
    """``python -m engine.store.migrate [upgrade | current | revision MESSAGE]``."""
    from engine.store.database import create_db_engine, database_url

    usage = "usage: python -m engine.store.migrate [upgrade | current | revision MESSAGE]"
    if not argv or argv[0] not in {"upgrade", "current", "revision"}:
        print(usage, file=sys.stderr)
        return 2
    engine = create_db_engine(database_url())
    try:
        if argv[0] == "upgrade":
            upgrade(engine)
            print(f"at {current_revision(engine)}")
        elif argv[0] == "current":
            print(f"at {current_revision(engine)} (head is {head_revision()})")
        else:
            if len(argv) != 2:
                print(usage, file=sys.stderr)
                return 2
            with _IN_PROCESS, engine.begin() as connection:
                upgrade_lock(connection)
                command.revision(
                    alembic_config(connection),
                    message=argv[1],
                    autogenerate=True,
                    rev_id=next_revision_id(),
                )
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
