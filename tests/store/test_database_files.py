"""The embedded store holds personal data: ``.data/`` is 0700, its database files 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.store.database import Database
from engine.store.ingest import Ingestor


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JOURNEY_DATABASE_URL", raising=False)
    return tmp_path


def test_the_default_store_is_private(project: Path) -> None:
    previous = os.umask(0o022)  # the usual umask, which makes new files world-readable
    try:
        db = Database()
        Ingestor(db).ingest([{"type": "track", "userId": "u1", "event": "e"}])
        files = sorted(p.name for p in (project / ".data").iterdir())
        assert {"journey.db", "journey.db-wal", "journey.db-shm"} <= set(files)
        assert mode(project / ".data") == 0o700
        for name in files:
            assert mode(project / ".data" / name) == 0o600, name
        db.dispose()
    finally:
        os.umask(previous)


def test_a_store_an_older_version_left_readable_is_made_private(project: Path) -> None:
    (project / ".data").mkdir(mode=0o755)
    (project / ".data").chmod(0o755)
    Database().dispose()  # creates the file as this version would not
    (project / ".data" / "journey.db").chmod(0o644)
    Database().dispose()
    assert mode(project / ".data") == 0o700
    assert mode(project / ".data" / "journey.db") == 0o600


def test_a_sqlite_file_elsewhere_is_created_0600(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        Database(f"sqlite:///{tmp_path / 'other.db'}").dispose()
    finally:
        os.umask(previous)
    assert mode(tmp_path / "other.db") == 0o600
