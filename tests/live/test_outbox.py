"""The outbox service: owned claims, leases that fit one send, timeouts, given-up claims."""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.channels.senders import OutboundMessage, Receipt, RecordingSender, SenderRegistry
from engine.errors import CircuitOpen, InvalidAddress
from engine.live.engine import LiveEngine
from engine.project import SourceTree
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.schema import DeadLetter, Message, Profile, Run
from tests.live.clock import Clock

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
HELLO = """
id: hello
name: Hello
trigger: {event: Go}
start: say
steps:
  say:
    send:
      channel: sms
      fallback: [email]
      content: {sms: {text: "hi"}, email: {subject: "hi", html: "<p>hi</p>"}}
    next: end
"""


@pytest.fixture
def project(db: Database, tmp_path: Path) -> None:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "hello.yaml").write_text(textwrap.dedent(HELLO))
    deploy(db, SourceTree.from_directory(tmp_path / "journeys"), now=T0)


def engine(db: Database, clock: Clock, sms: object, **options: object) -> LiveEngine:
    senders = SenderRegistry({"sms": sms})  # type: ignore[dict-item]
    return LiveEngine(Database(db.url, migrate=False), senders, clock=clock, **options)  # type: ignore[arg-type]


@pytest.fixture
def queued(db: Database, project: None, clock: Clock) -> Iterator[None]:
    """One user with an SMS waiting in the outbox."""
    Ingestor(db).ingest(
        [
            {"type": "identify", "userId": "u1", "messageId": "i",
             "traits": {"phone": "+8613800000001", "email": "u1@example.com"}},
            {"type": "track", "userId": "u1", "event": "Go", "messageId": "g"},
        ],
        now=T0,
    )  # fmt: skip
    LiveEngine(db, clock=clock).apply()
    yield


def sms_rows(db: Database) -> list[Message]:
    with db.sessions() as session:
        return list(session.scalars(select(Message).where(Message.channel == "sms")))


def test_a_result_from_a_claim_that_was_taken_over_is_not_recorded(
    db: Database, queued: None, clock: Clock
) -> None:
    sms = RecordingSender()
    slow, fast = engine(db, clock, sms), engine(db, clock, sms)
    try:
        stalled = slow.outbox.claim()
        slow.outbox.prepare(stalled)
        slow.outbox.send(stalled)  # ... and then the dispatcher stalls past its lease
        clock.now += timedelta(seconds=11)
        assert fast.dispatch().messages == 1  # the claim lapsed: another dispatcher sends it
        (row,) = sms_rows(db)
        assert (row.status, row.tries) == ("sent", 2)
        stalled.deliveries[row.message_id].receipt = Receipt("recording", "a different id")
        slow.outbox.record(stalled)  # too late: its token is gone
        (row,) = sms_rows(db)
        assert row.provider_message_id == row.message_id  # the second claim's record stands
        assert sms.calls == [row.message_id] * 2 and list(sms.sent) == [row.message_id]
        with db.sessions() as session:
            assert session.scalars(select(Run.status)).one() == "completed"
    finally:
        slow.db.dispose()
        fast.db.dispose()


class Slow:
    """A provider that takes ``seconds`` to answer; counts calls."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.called = threading.Event()

    def send(self, message: OutboundMessage) -> Receipt:
        self.calls += 1
        self.called.set()
        time.sleep(self.seconds)
        return Receipt("slow", message.message_id)


def test_the_lease_is_renewed_while_a_slow_send_goes_on(db: Database, queued: None) -> None:
    real = Clock(datetime.now(UTC))

    def now() -> datetime:
        return datetime.now(UTC)

    provider = Slow(2.5)
    sending = engine(db, real, provider, claim_lease=timedelta(seconds=1))
    sending.outbox.clock = now
    other = engine(db, real, RecordingSender(), claim_lease=timedelta(seconds=1))
    other.outbox.clock = now
    try:
        done = threading.Thread(target=sending.dispatch)
        done.start()
        assert provider.called.wait(10)
        taken_over = 0
        while done.is_alive():  # another dispatcher keeps trying to take the message over
            taken_over += other.dispatch().messages
            time.sleep(0.1)
        done.join()
        assert taken_over == 0 and provider.calls == 1
        (row,) = sms_rows(db)
        assert (row.status, row.tries, row.claimed_by) == ("sent", 1, None)
    finally:
        sending.db.dispose()
        other.db.dispose()


def test_a_provider_that_does_not_answer_in_time_is_a_transient_failure(
    db: Database, queued: None, clock: Clock
) -> None:
    provider = Slow(6)
    live = engine(db, clock, provider, send_timeout=0.5)
    try:
        started = time.monotonic()
        live.dispatch()
        assert time.monotonic() - started < 4.5  # it did not wait for the provider
        (row,) = sms_rows(db)
        assert row.status == "pending" and "no answer within 2.5 s" in (row.reason or "")
        assert row.send_at > clock()  # backed off, to be retried
    finally:
        live.db.dispose()


def test_a_message_whose_claims_keep_running_out_is_given_up(
    db: Database, queued: None, clock: Clock
) -> None:
    sms = RecordingSender()
    live = engine(db, clock, sms)
    try:
        for _ in range(live.outbox.max_tries):  # each time its dispatcher dies mid-send
            claim = live.outbox.claim()
            assert claim.ids
            clock.now += timedelta(seconds=11)
        work = live.dispatch()
        assert work.dead == 1 and sms.calls == []
        with db.sessions() as session:
            messages = {m.channel: m for m in session.scalars(select(Message))}
            (dead,) = session.scalars(select(DeadLetter)).all()
        assert messages["sms"].status == "failed" and "gave up after 5 tries" in (
            messages["sms"].reason or ""
        )
        assert dead.kind == "message" and dead.ref == messages["sms"].message_id
        assert "email" not in messages  # an engine failure does not fall back
    finally:
        live.db.dispose()


class Refusing:
    """A provider that says the address no longer exists, or defers every call."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def send(self, message: OutboundMessage) -> Receipt:
        self.calls += 1
        raise self.error


def test_an_address_the_provider_says_is_gone_is_cleared_and_the_send_falls_back(
    db: Database, queued: None, clock: Clock
) -> None:
    provider = Refusing(InvalidAddress("unregistered", "phone", clear=True))
    live = engine(db, clock, provider)
    try:
        live.dispatch()
        live.dispatch()  # the fallback email
        with db.sessions() as session:
            messages = {m.channel: m for m in session.scalars(select(Message))}
            profile = session.get(Profile, "user:u1")
        assert messages["sms"].status == "failed" and messages["email"].status == "sent"
        assert profile is not None and "phone" not in profile.traits
        assert profile.traits["email"] == "u1@example.com"
    finally:
        live.db.dispose()


def test_a_deferred_call_is_retried_without_counting_a_try(
    db: Database, queued: None, clock: Clock
) -> None:
    provider = Refusing(CircuitOpen("the provider's circuit is open", retry_after=30))
    live = engine(db, clock, provider)
    try:
        for _ in range(8):  # more than the tries a message gets
            live.dispatch()
            clock.advance(timedelta(seconds=31))
        (row,) = sms_rows(db)
        assert provider.calls == 8
        assert (row.status, row.tries) == ("pending", 0)
    finally:
        live.db.dispose()
