"""Opening the database: SQLite (WAL) embedded by default, PostgreSQL by URL.

``JOURNEY_DATABASE_URL`` picks the database, e.g.
``postgresql+psycopg://user@host/db``; without it the engine keeps its state in
``.data/journey.db`` (SQLite in WAL mode). The schema is brought up to date with Alembic
on open (``migrate``).

SQLite lets one writer at a time hold the file, and a writer that finds it taken sleeps
and polls until its busy timeout runs out; under fifty concurrent clients some requests
lost that race for ten seconds and failed. So a process talks to a SQLite file through a
single connection: transactions queue for it in the process, in order, and the file lock
is only contended by other processes (``journey deploy``), briefly.

The embedded database holds personal data: ``.data/`` is kept 0700 and a database file
the engine creates is 0600 (SQLite gives its ``-wal`` and ``-shm`` files the same mode).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

DEFAULT_SQLITE_PATH = Path(".data") / "journey.db"


def database_url(explicit: str | None = None) -> str:
    """``explicit``, else ``JOURNEY_DATABASE_URL``, else the embedded SQLite file."""
    url = explicit or os.environ.get("JOURNEY_DATABASE_URL")
    if url:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    make_private_directory(DEFAULT_SQLITE_PATH.parent)
    for path in DEFAULT_SQLITE_PATH.parent.glob(f"{DEFAULT_SQLITE_PATH.name}*"):
        with contextlib.suppress(OSError):  # files an older version created world-readable
            path.chmod(0o600)
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


def make_private_directory(path: Path) -> None:
    """Create ``path`` (and its parents) if needed, and make it 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, or None (in memory, or a ``file:`` URI)."""
    name = make_url(url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 before SQLite would create it 0644."""
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # pysqlite defers BEGIN until the first write; take the write lock up front so two
    # writers never deadlock upgrading read locks, and reads see one snapshot.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


#: How long a transaction may queue for the SQLite connection before the request fails
#: as "unavailable" (sqlalchemy.exc.TimeoutError): only a stuck process gets there.
SQLITE_QUEUE_TIMEOUT = 60.0


def create_db_engine(url: str) -> Engine:
    """A SQLAlchemy engine with the backend's settings applied."""
    if url.startswith("sqlite"):
        path = _sqlite_file(url)
        if path is not None:
            _create_private(path)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=QueuePool,
            pool_size=1,  # the one connection every transaction of this process queues for
            max_overflow=0,
            pool_timeout=SQLITE_QUEUE_TIMEOUT,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy, not pysqlite, open transactions, so BEGIN IMMEDIATE is used.
        event.listen(engine, "connect", lambda conn, _rec: setattr(conn, "isolation_level", None))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class Database:
    """An engine plus a session factory; ``transaction()`` is the unit of work."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url = database_url(url)
        self.engine = create_db_engine(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        """Bring the schema up to date (Alembic ``upgrade head``)."""
        from engine.store.migrate import upgrade

        upgrade(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


_AFTER_COMMIT = "journey.after_commit"


def after_commit(session: Session, callback: Callable[[], object]) -> None:
    """Call ``callback`` once ``session``'s transaction commits (never if it rolls back):
    for what must not count work that did not happen, like metrics."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, ()):
        try:
            callback()
        # The transaction is committed: nothing a callback does may undo or fail it.
        except Exception:
            logging.getLogger("journey.store").exception("an after-commit callback failed")


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
