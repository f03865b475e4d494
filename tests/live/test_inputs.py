"""The input service: claims, each user's order, and what a round may and may not do."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.events import parse_message
from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor, _row, insert_events
from engine.store.partitions import partition_of
from engine.store.schema import Entry, Message, Run, StoredEvent, Timer
from tests.conftest import FreshDatabases
from tests.live.clock import Clock

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)

NUDGE = """
id: nudge
name: Nudge
trigger: {event: Go}
entry: {re_entry: always}
exit_when: [{event: Stop}]
start: pause
steps:
  pause: {wait: 3s, next: say}
  say:
    send: {channel: sms, content: {text: "hi"}}
    next: end
"""


@pytest.fixture
def live(db: Database, clock: Clock, tmp_path: Path) -> Iterator[LiveEngine]:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "nudge.yaml").write_text(textwrap.dedent(NUDGE))
    deploy(db, SourceTree.from_directory(tmp_path / "journeys"), now=T0)
    yield LiveEngine(db, clock=clock)


def track(user: str, name: str, message_id: str) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": name, "messageId": message_id}


def identify(user: str, message_id: str) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "traits": {"phone": "+1"}, "messageId": message_id}


def count(db: Database, model: Any, *where: Any) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_an_event_that_commits_late_is_applied_after_what_was_applied_before(
    db: Database, live: LiveEngine, clock: Clock
) -> None:
    ingest = Ingestor(db)
    ingest.ingest([identify("u1", "i1")], now=T0)
    clock.now = T0 + timedelta(seconds=5)
    ingest.ingest([track("u1", "Go", "early"), track("u1", "Stop", "stop")], now=clock())
    live.apply()
    # A request received at T0 whose transaction commits only now, after the later one
    # was applied (its row appears with an earlier receive time).
    with db.transaction() as slow:
        payload = {**track("u1", "Go", "late"), "timestamp": T0.isoformat()}
        insert_events(slow, [_row(parse_message(payload), payload, T0)])
    clock.now = T0 + timedelta(seconds=6)
    apply_until_idle(live)
    with db.sessions() as session:
        entered = sorted(session.scalars(select(Run.entered_at)))
        entry = session.get(Entry, ("user:u1", "nudge"))
    assert entry is not None and entry.count == 2
    # Never before T0 + 5 s: the user's timeline only moves forward.
    assert entered == [T0 + timedelta(seconds=5)] * 2
    assert entry.last_entered_at == T0 + timedelta(seconds=5)


def test_a_timer_that_comes_due_inside_a_backlog_fires_in_its_place(
    db: Database, live: LiveEngine, clock: Clock
) -> None:
    """After downtime: Go at T0, Stop at T0+5 s, applied at T0+100 s. The 3 s wait came due
    before the Stop, so the message is dispatched (the Stop then ends the run while it
    waits for the delivery); had the Stop been applied first, nothing would be sent."""
    ingest = Ingestor(db)
    ingest.ingest([identify("u1", "i1"), track("u1", "Go", "go")], now=T0)
    ingest.ingest([track("u1", "Stop", "stop")], now=T0 + timedelta(seconds=5))
    clock.now = T0 + timedelta(seconds=100)
    apply_until_idle(live)
    with db.sessions() as session:
        message = session.scalars(select(Message)).one()
        run = session.scalars(select(Run)).one()
    assert message.status == "sent" and message.created_at == clock()
    assert run.status == "exited" and run.ended_at == T0 + timedelta(seconds=5)


def test_one_users_backlog_does_not_hold_up_another_in_the_same_partition(
    db: Database, live: LiveEngine
) -> None:
    hot = "hot"
    cold = next(
        f"c{i}" for i in range(10_000) if partition_of(f"user:c{i}") == partition_of("user:hot")
    )
    Ingestor(db).ingest(
        [track(hot, "Go", f"h{n}") for n in range(250)] + [track(cold, "Go", "c")], now=T0
    )
    work = live.apply()  # one round
    assert work.more and work.events == live.inputs.per_user + 1
    with db.sessions() as session:
        done = dict(
            session.execute(
                select(StoredEvent.user_key, func.count())
                .where(StoredEvent.status == "processed")
                .group_by(StoredEvent.user_key)
            ).all()
        )
    assert done == {"user:hot": live.inputs.per_user, f"user:{cold}": 1}
    apply_until_idle(live)
    assert count(db, StoredEvent, StoredEvent.status == "pending") == 0


def test_a_claimed_partition_is_skipped_by_other_workers_not_waited_for(
    fresh_databases: FreshDatabases, clock: Clock, tmp_path: Path
) -> None:
    """(PostgreSQL: on SQLite a transaction holding a claim holds the one writer's lock.)"""
    db = Database(fresh_databases.new("postgresql"))
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "nudge.yaml").write_text(textwrap.dedent(NUDGE))
    deploy(db, SourceTree.from_directory(tmp_path / "journeys"), now=T0)
    live = LiveEngine(db, clock=clock)
    other = LiveEngine(Database(db.url, migrate=False), clock=clock)
    try:
        Ingestor(db).ingest([track("a", "Go", "a1"), track("b", "Go", "b1")], now=T0)
        with db.sessions() as session, session.begin():
            held = live.inputs.claim(session, T0, [partition_of("user:a")])
            assert [i.ref for i in held.inputs] != []
            work = other.apply()  # skips a's partition, applies b's
            assert work.events == 1
            assert count(db, StoredEvent, StoredEvent.user_key == "user:b",
                         StoredEvent.status == "processed") == 1  # fmt: skip
            live.inputs.apply(session, held, T0)
        assert count(db, StoredEvent, StoredEvent.status == "pending") == 0
        assert count(db, Run) == 2
    finally:
        other.db.dispose()
        db.dispose()


def test_a_timer_moved_by_a_merge_is_fired_once_by_its_new_partition(
    db: Database, live: LiveEngine, clock: Clock
) -> None:
    ingest = Ingestor(db)
    anonymous = {"type": "track", "anonymousId": "a1", "event": "Go", "messageId": "g"}
    ingest.ingest([anonymous], now=T0)
    live.apply()
    with db.sessions() as session:
        (timer,) = session.scalars(select(Timer)).all()
        assert timer.partition == partition_of("anon:a1")
    link = {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "l",
            "traits": {"phone": "+1"}}  # fmt: skip
    ingest.ingest([link], now=T0 + timedelta(seconds=1))
    clock.now = T0 + timedelta(seconds=1)
    live.apply()
    with db.sessions() as session:
        (timer,) = session.scalars(select(Timer)).all()
        assert (timer.user_key, timer.partition) == ("user:u1", partition_of("user:u1"))
    clock.now = T0 + timedelta(seconds=4)
    apply_until_idle(live)
    with db.sessions() as session:
        (message,) = session.scalars(select(Message)).all()
        assert (message.user_key, message.status) == ("user:u1", "sent")
    assert count(db, Timer) == 0


def test_events_nobody_listens_to_are_marked_processed_without_touching_users(
    db: Database, live: LiveEngine
) -> None:
    Ingestor(db).ingest([track(f"u{i}", "Viewed", f"v{i}") for i in range(20)], now=T0)
    apply_until_idle(live)
    assert count(db, StoredEvent, StoredEvent.status == "processed") == 20
    from engine.store.schema import Profile

    assert count(db, Profile) == 0
