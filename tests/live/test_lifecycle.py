"""Pausing, resuming and stopping a journey while its runs are in flight."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.lifecycle import apply_journey_state
from engine.store.schema import Message, Run, Timer
from tests.live.clock import Clock

NUDGE = """
id: nudge
name: Nudge
trigger: {event: Go}
entry: {re_entry: always}
start: pause
steps:
  pause: {wait: 1h, next: say}
  say:
    send: {channel: sms, content: {text: "hi"}}
    next: end
"""


def engine(db: Database, clock: Clock, tmp_path: Path) -> LiveEngine:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "nudge.yaml").write_text(textwrap.dedent(NUDGE))
    deploy(db, SourceTree.from_directory(tmp_path / "journeys"), now=clock())
    return LiveEngine(db, clock=clock)


def go(db: Database, clock: Clock, user: str, number: int) -> None:
    Ingestor(db).ingest(
        [{"type": "identify", "userId": user, "traits": {"phone": "+1"}, "messageId": f"i{user}"},
         {"type": "track", "userId": user, "event": "Go", "messageId": f"{user}-{number}"}],
        now=clock(),
    )  # fmt: skip


def statuses(db: Database) -> dict[str, int]:
    with db.sessions() as session:
        return dict(
            session.execute(select(Message.status, func.count()).group_by(Message.status)).all()
        )


def test_a_paused_journey_admits_no_one_and_holds_its_sends_until_resumed(
    db: Database, clock: Clock, tmp_path: Path
) -> None:
    live = engine(db, clock, tmp_path)
    go(db, clock, "a", 1)
    apply_until_idle(live)
    assert apply_journey_state(db, "nudge", "paused", "ops") == (True, 0)
    assert apply_journey_state(db, "nudge", "paused", "ops") == (False, 0)
    go(db, clock, "b", 1)  # not admitted while paused
    clock.advance(timedelta(hours=1))  # a's wait ends: the send is made and held
    apply_until_idle(live)
    assert statuses(db) == {"pending": 1}
    with db.sessions() as session:
        assert session.scalars(select(Run.user_key)).all() == ["user:a"]
    apply_journey_state(db, "nudge", "active", "ops")
    apply_until_idle(live)
    assert statuses(db) == {"sent": 1}
    go(db, clock, "b", 2)  # admitted again
    apply_until_idle(live)
    with db.sessions() as session:
        assert sorted(session.scalars(select(Run.user_key))) == ["user:a", "user:b"]


def test_a_stopped_journey_ends_its_runs_now(db: Database, clock: Clock, tmp_path: Path) -> None:
    live = engine(db, clock, tmp_path)
    for user in ("a", "b", "c"):
        go(db, clock, user, 1)
    apply_until_idle(live)
    assert apply_journey_state(db, "nudge", "stopped", "ops") == (True, 3)
    clock.advance(timedelta(hours=2))
    go(db, clock, "d", 1)
    apply_until_idle(live)
    with db.sessions() as session:
        runs = dict(session.execute(select(Run.user_key, Run.status)).all())
        assert session.scalar(select(func.count()).select_from(Timer)) == 0
    assert runs == {"user:a": "stopped", "user:b": "stopped", "user:c": "stopped"}
    assert statuses(db) == {}
    assert apply_journey_state(db, "nope", "paused", "ops") is None
