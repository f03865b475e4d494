"""Property: however ingest, claims and deliveries of several workers interleave, every
event is applied once and every message is sent once (again only after its claim lapsed).

A hypothesis state machine on PostgreSQL drives three workers (each a LiveEngine with
connections of its own) step by step: requests whose transaction stays open while others
commit (so they commit "late", with an earlier receive time), input claims held open
while other workers claim, claims abandoned as if the worker died, outbox claims split
into claim / send / record with leases running out between them, and anonymous visitors
merged into known users in between.
"""

from __future__ import annotations

import itertools
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from engine.channels.senders import RecordingSender, SenderRegistry
from engine.events import parse_message
from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree
from engine.services.inputs import Batch
from engine.services.outbox import Claim
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import _row, insert_events
from engine.store.schema import DeadLetter, Entry, Message, Run, StoredEvent, Timer
from tests.conftest import FreshDatabases, in_ci
from tests.live.clock import Clock
from tests.live.test_concurrency import COUNT, FLOW

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
KNOWN = ["hot", "c1", "c2", "c3"]
ANONYMOUS = ["a1", "a2"]
TABLES = "events, profiles, identities, runs, entries, timers, messages, dead_letters"


class Interleavings(RuleBasedStateMachine):
    """Three workers, one database, every step a possible interleaving."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.clock = Clock(T0)
        self.sender = RecordingSender()
        self.dbs = [Database(url, migrate=False) for _ in range(4)]
        with self.dbs[0].transaction() as session:
            session.execute(text(f"TRUNCATE {TABLES}"))
        senders = SenderRegistry({"email": self.sender, "sms": self.sender})
        self.workers = [
            LiveEngine(db, senders, clock=self.clock, claim_lease=timedelta(seconds=10))
            for db in self.dbs[:3]
        ]
        self.ids = itertools.count()
        self.open_ingests: list[Session] = []
        self.held: dict[int, tuple[Session, Batch, datetime]] = {}
        self.claims: list[tuple[int, Claim, bool]] = []  # (worker, claim, sent yet)
        self.store([self.identify(user) for user in KNOWN])

    # -- helpers --

    def identify(self, user: str, anonymous: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "identify",
            "userId": user,
            "messageId": f"m{next(self.ids)}",
            "traits": {"email": f"{user}@example.com", "phone": "+8613800000000"},
        }
        if anonymous is not None:
            message["anonymousId"] = anonymous
        return message

    def go(self, who: str) -> dict[str, Any]:
        key = "anonymousId" if who in ANONYMOUS else "userId"
        return {"type": "track", key: who, "event": "Go", "messageId": f"m{next(self.ids)}"}

    def rows(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = []
        for message in messages:
            payload = {**message, "timestamp": self.clock().isoformat()}
            rows.append(_row(parse_message(payload), payload, self.clock()))
        return rows

    def store(self, messages: list[dict[str, Any]]) -> None:
        with self.dbs[3].transaction() as session:
            insert_events(session, self.rows(messages))

    # -- ingest --

    @rule(who=st.sampled_from(KNOWN + ANONYMOUS), times=st.integers(1, 3))
    def send_go(self, who: str, times: int) -> None:
        self.store([self.go(who) for _ in range(times)])

    @rule(anonymous=st.sampled_from(ANONYMOUS), user=st.sampled_from(KNOWN))
    def link(self, anonymous: str, user: str) -> None:
        self.store([self.identify(user, anonymous)])

    @precondition(lambda self: len(self.open_ingests) < 3)
    @rule(who=st.sampled_from(KNOWN + ANONYMOUS))
    def begin_slow_request(self, who: str) -> None:
        session = self.dbs[3].sessions()
        session.begin()
        insert_events(session, self.rows([self.go(who)]))
        self.open_ingests.append(session)

    @precondition(lambda self: self.open_ingests)
    @rule()
    def commit_slow_request(self) -> None:
        session = self.open_ingests.pop(0)
        session.commit()
        session.close()

    @rule(seconds=st.integers(1, 12))
    def tick(self, seconds: int) -> None:
        self.clock.now += timedelta(seconds=seconds)

    # -- inputs --

    @rule(worker=st.integers(0, 2))
    def apply(self, worker: int) -> None:
        if worker not in self.held:
            self.workers[worker].apply()

    @rule(worker=st.integers(0, 2))
    def hold_claim(self, worker: int) -> None:
        if worker in self.held:
            return
        session = self.dbs[worker].sessions()
        session.begin()
        now = self.clock()
        batch = self.workers[worker].inputs.claim(session, now)
        if batch.inputs:
            self.held[worker] = (session, batch, now)
        else:
            session.rollback()
            session.close()

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def finish_claim(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(sorted(self.held)))
        session, batch, now = self.held.pop(worker)
        self.workers[worker].inputs.apply(session, batch, now)
        session.commit()
        session.close()

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def die_holding_claim(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(sorted(self.held)))
        session, _, _ = self.held.pop(worker)
        session.rollback()  # the connection dies with the worker: its claims go too
        session.close()

    # -- outbox --

    @rule(worker=st.integers(0, 2))
    def claim_messages(self, worker: int) -> None:
        outbox = self.workers[worker].outbox
        claim = outbox.claim()
        if claim.any:
            outbox.give_up(claim)
            outbox.prepare(claim)
            self.claims.append((worker, claim, False))

    @precondition(lambda self: any(not sent for _, _, sent in self.claims))
    @rule(data=st.data())
    def send_claimed(self, data: st.DataObject) -> None:
        waiting = [i for i, (_, _, sent) in enumerate(self.claims) if not sent]
        index = data.draw(st.sampled_from(waiting))
        worker, claim, _ = self.claims[index]
        self.workers[worker].outbox.send(claim)
        self.claims[index] = (worker, claim, True)

    @precondition(lambda self: any(sent for _, _, sent in self.claims))
    @rule(data=st.data())
    def record_claimed(self, data: st.DataObject) -> None:
        ready = [i for i, (_, _, sent) in enumerate(self.claims) if sent]
        worker, claim, _ = self.claims.pop(data.draw(st.sampled_from(ready)))
        self.workers[worker].outbox.record(claim)

    @precondition(lambda self: self.claims)
    @rule(data=st.data())
    def die_with_claimed_messages(self, data: st.DataObject) -> None:
        self.claims.pop(data.draw(st.integers(0, len(self.claims) - 1)))

    # -- what must hold at every step --

    def scalar(self, query: Any) -> Any:
        with self.dbs[3].sessions() as session:
            return session.scalar(query)

    @invariant()
    def each_applied_event_counted_once(self) -> None:
        applied = self.scalar(
            select(func.count())
            .select_from(StoredEvent)
            .where(StoredEvent.type == "track", StoredEvent.status == "processed")
        )
        counted = self.scalar(
            select(func.count()).select_from(Run).where(Run.journey_id == "count")
        )
        assert counted == applied

    @invariant()
    def sent_once_unless_a_claim_lapsed(self) -> None:
        with self.dbs[3].sessions() as session:
            tries = dict(session.execute(select(Message.message_id, Message.tries)).all())
            sent = set(session.scalars(select(Message.message_id).where(Message.status == "sent")))
        assert sent <= set(self.sender.sent)
        for message_id, calls in Counter(self.sender.calls).items():
            assert calls <= tries[message_id], (message_id, calls, tries[message_id])

    @invariant()
    def a_users_timeline_never_runs_backwards(self) -> None:
        """Each entry is at or after the one before it, however late a request committed:
        so the latest entry is also the last one made."""
        with self.dbs[3].sessions() as session:
            latest = dict(
                session.execute(
                    select(Run.user_key, func.max(Run.entered_at))
                    .where(Run.journey_id == "count")
                    .group_by(Run.user_key)
                ).all()
            )
            last = dict(
                session.execute(
                    select(Entry.user_key, Entry.last_entered_at).where(Entry.journey_id == "count")
                ).all()
            )
        assert last == latest

    @invariant()
    def one_active_flow_per_user(self) -> None:
        with self.dbs[3].sessions() as session:
            active = session.scalars(
                select(Run.user_key).where(Run.journey_id == "flow", Run.status == "active")
            ).all()
        assert len(active) == len(set(active))

    def teardown(self) -> None:
        try:
            for session in self.open_ingests:
                session.commit()
                session.close()
            for session, _, _ in self.held.values():
                session.rollback()
                session.close()
            self.clock.now += timedelta(seconds=30)  # every lapsed claim is taken over
            for _ in range(4):
                apply_until_idle(self.workers[0])
                self.clock.now += timedelta(seconds=30)
            with self.dbs[3].sessions() as session:
                statuses = set(session.scalars(select(StoredEvent.status)))
                assert statuses <= {"processed"}, statuses
                assert session.scalar(select(func.count()).select_from(Timer)) == 0
                assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
                open_ = session.scalars(
                    select(Message.status).where(Message.status.in_(("pending", "sending")))
                ).all()
                assert open_ == []
                goes = session.scalar(
                    select(func.count()).select_from(StoredEvent).where(StoredEvent.type == "track")
                )
                counted = session.scalar(
                    select(func.count()).select_from(Run).where(Run.journey_id == "count")
                )
                assert counted == goes
                flows = session.scalars(select(Run.status).where(Run.journey_id == "flow")).all()
                assert set(flows) <= {"completed", "merged"}
            self.sent_once_unless_a_claim_lapsed()
        finally:
            for db in self.dbs:
                db.dispose()


@pytest.fixture
def interleaving_url(fresh_databases: FreshDatabases, tmp_path: Path) -> str:
    url = fresh_databases.new("postgresql")
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "flow.yaml").write_text(textwrap.dedent(FLOW))
    (tmp_path / "journeys" / "count.yaml").write_text(textwrap.dedent(COUNT))
    db = Database(url)
    try:
        deploy(db, SourceTree.from_directory(tmp_path / "journeys"), now=T0)
    finally:
        db.dispose()
    return url


def test_any_interleaving_applies_once_and_sends_once(interleaving_url: str) -> None:
    run_state_machine_as_test(
        lambda: Interleavings(interleaving_url),
        settings=settings(
            max_examples=25 if in_ci() else 60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
