"""Dead letters are replayed into the live engine, or discarded, and both are audited."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.live.engine import LiveEngine, apply_until_idle
from engine.processor import Processor
from engine.project import SourceTree
from engine.store.audit import audit_entries
from engine.store.database import Database
from engine.store.dead_letters import NoSuchDeadLetter, discard, replay
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.partitions import partition_of
from engine.store.schema import DeadLetter, Message, Run, StoredEvent, Timer
from tests.live.clock import T0, Clock
from tests.live.test_inputs import NUDGE, identify, track


class Broken(Exception):
    """A bug in applying one input."""


@pytest.fixture
def live(db: Database, clock: Clock, tmp_path: Path) -> Iterator[LiveEngine]:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "nudge.yaml").write_text(textwrap.dedent(NUDGE))
    deploy(db, SourceTree.from_directory(tmp_path / "journeys"), now=T0, actor="ops")
    yield LiveEngine(db, clock=clock)


def letters(db: Database) -> list[DeadLetter]:
    with db.sessions() as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def the_run(db: Database) -> Run:
    with db.sessions() as session:
        return session.scalars(select(Run)).one()


def test_a_run_whose_timer_was_dead_lettered_moves_on_after_replay(
    db: Database, live: LiveEngine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    Ingestor(db).ingest([identify("u1", "i1"), track("u1", "Go", "go")], now=T0)
    apply_until_idle(live)
    real_fire = Processor.fire

    def fire(self: Processor, *args: Any) -> None:
        raise Broken("the timer cannot be applied")

    monkeypatch.setattr(Processor, "fire", fire)
    clock.advance(timedelta(seconds=5))
    apply_until_idle(live)
    (letter,) = letters(db)
    assert letter.kind == "timer" and "Broken" in letter.error
    assert letter.payload is not None and letter.payload["user_key"] == "user:u1"
    run = the_run(db)
    assert (run.status, run.step) == ("active", "pause")  # stuck without its timer
    with db.sessions() as session:
        assert session.scalar(select(Timer)) is None

    monkeypatch.setattr(Processor, "fire", real_fire)  # the bug is fixed
    with db.transaction() as session:
        done = replay(session, letter.id, "alice", clock())
    assert done.replayed and "set again" in done.note
    with db.sessions() as session:
        timer = session.scalars(select(Timer)).one()
    assert timer.timer_id == letter.ref and timer.partition == partition_of("user:u1")
    apply_until_idle(live)
    run = the_run(db)
    assert run.status == "completed"
    with db.sessions() as session:
        message = session.scalars(select(Message)).one()
        entries = audit_entries(session)
    assert (message.step, message.status) == ("say", "sent")
    assert letters(db)[0].replayed_at == clock()
    assert [(e.action, e.actor, e.target) for e in entries][:1] == [
        ("replay", "alice", f"dead_letter:{letter.id}")
    ]
    assert entries[-1].action == "deploy" and entries[-1].actor == "ops"
    with db.transaction() as session:  # nothing is replayed twice
        again = replay(session, letter.id, "alice", clock())
    assert not again.replayed and "replayed already" in again.note


def test_an_event_and_a_message_replay_and_a_discard(
    db: Database, live: LiveEngine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_apply = Processor.apply

    def apply(self: Processor, event: Any, now: Any) -> None:
        if event.message_id == "bad":
            raise Broken("cannot apply")
        real_apply(self, event, now)

    monkeypatch.setattr(Processor, "apply", apply)
    Ingestor(db).ingest([identify("u2", "i2"), track("u2", "Go", "bad")], now=T0)
    apply_until_idle(live)
    (letter,) = letters(db)
    assert letter.kind == "event"
    with db.sessions() as session:
        assert (
            session.scalars(select(StoredEvent.status).where(StoredEvent.message_id == "bad")).one()
            == "failed"
        )
    monkeypatch.setattr(Processor, "apply", real_apply)
    with db.transaction() as session:
        assert replay(session, letter.id, "bob", clock()).replayed
    clock.advance(timedelta(seconds=5))
    apply_until_idle(live)
    assert the_run(db).status == "completed"  # the event entered the journey after all

    # A message set aside (its dispatcher kept dying) goes back to pending with no tries.
    with db.transaction() as session:
        message = session.scalars(select(Message)).one()
        message.status, message.tries, message.reason = "failed", 5, "gave up after 5 tries"
        session.add(
            DeadLetter(
                kind="message",
                ref=message.message_id,
                error="RuntimeError: gave up",
                payload={},
                created_at=clock(),
            )
        )
    message_letter = letters(db)[-1]
    with db.transaction() as session:
        assert replay(session, message_letter.id, "bob", clock()).replayed
    with db.sessions() as session:
        message = session.scalars(select(Message)).one()
    assert (message.status, message.tries, message.reason) == ("pending", 0, None)
    apply_until_idle(live)
    with db.sessions() as session:
        assert session.scalars(select(Message.status)).one() == "sent"

    with db.transaction() as session:
        gone = discard(session, message_letter.id, "carol", clock())
    assert gone["kind"] == "message"
    with db.transaction() as session, pytest.raises(NoSuchDeadLetter):
        discard(session, message_letter.id, "carol", clock())
    with db.sessions() as session:
        actions = [(e.action, e.actor) for e in audit_entries(session)]
    assert actions[:3] == [("discard", "carol"), ("replay", "bob"), ("replay", "bob")]
