"""An input that kills its worker is set aside after a few deaths, and never loops."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.events import Event
from engine.live.engine import LiveEngine
from engine.processor import Processor
from engine.project import SourceTree
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.schema import ClaimAttempt, DeadLetter, StoredEvent
from tests.conftest import FreshDatabases
from tests.live.clock import T0, Clock
from tests.live.test_inputs import NUDGE


class Death(BaseException):
    """The worker process dies: no handler runs, the transaction is never committed."""


@pytest.fixture
def postgres(fresh_databases: FreshDatabases, tmp_path: Path) -> Iterator[Database]:
    db = Database(fresh_databases.new("postgresql"))
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "nudge.yaml").write_text(textwrap.dedent(NUDGE))
    deploy(db, SourceTree.from_directory(tmp_path / "journeys"), now=T0)
    yield db
    db.dispose()


def test_an_input_that_kills_its_worker_is_set_aside_and_the_rest_applied(
    postgres: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[str] = []
    real_apply = Processor.apply

    def apply(self: Processor, event: Event, now: Any) -> None:
        if event.message_id == "poison":
            raise Death
        applied.append(event.message_id)
        real_apply(self, event, now)

    monkeypatch.setattr(Processor, "apply", apply)
    track = [
        {"type": "track", "userId": "u1", "event": "Go", "messageId": m}
        for m in ("first", "poison", "last")
    ]
    Ingestor(postgres).ingest(track, now=T0)
    live = LiveEngine(postgres, clock=Clock(T0))
    deaths = 0
    for _ in range(10):
        try:
            live.apply()
            break
        except Death:
            deaths += 1
    assert deaths == 3  # two whole rounds, then the poison alone once
    with postgres.sessions() as session:
        statuses = dict(session.execute(select(StoredEvent.message_id, StoredEvent.status)).all())
        (dead,) = session.scalars(select(DeadLetter)).all()
        left = session.scalar(select(func.count()).select_from(ClaimAttempt))
    assert statuses == {"first": "processed", "poison": "failed", "last": "processed"}
    assert dead.kind == "event" and "its worker died applying it" in dead.error
    assert applied.count("first") == 3 and applied.count("last") == 1  # rolled back twice
    assert left == 0
