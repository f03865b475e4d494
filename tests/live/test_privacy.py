"""Forget, export and retention on a live engine, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, inspect, select, text

from engine.channels.senders import RecordingSender, SenderRegistry
from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.privacy import export, forget
from engine.store.retention import purge
from engine.store.schema import Forgotten, Message, Run, StoredEvent
from tests.live.clock import Clock

ROOT = Path(__file__).resolve().parents[2]
PII = {
    "email": "li.na@example.com",
    "phone": "+8613912345678",
    "name": "李娜",
    "locale": "zh-CN",
    "timezone": "Asia/Shanghai",
    "subscriptions": {"sms": True},
    "push_token": "fcm-token-li-na",
}


def setup_engine(db: Database, clock: Clock) -> tuple[LiveEngine, RecordingSender]:
    deploy(db, SourceTree.from_directory(ROOT / "journeys"), now=clock())
    sender = RecordingSender()
    channels = {c: sender for c in ("sms", "email", "push", "wecom")}
    return LiveEngine(db, SenderRegistry(channels), clock=clock), sender  # type: ignore[arg-type]


def mid_journey(db: Database, live: LiveEngine, clock: Clock) -> None:
    """li, known by an anonymous id and then her user id, in the middle of two journeys."""
    Ingestor(db).ingest(
        [
            {"type": "track", "anonymousId": "anon-li", "event": "Product Added",
             "properties": {"product_id": "p1", "price": 129}, "messageId": "m1"},
            {"type": "identify", "userId": "li", "anonymousId": "anon-li", "traits": PII,
             "messageId": "m2"},
            {"type": "track", "userId": "li", "event": "Signed Up", "messageId": "m3"},
        ],
        now=clock(),
    )  # fmt: skip
    apply_until_idle(live)


def everything(db: Database) -> str:
    """Every row of every table, as text."""
    out = []
    tables = inspect(db.engine).get_table_names()  # (on SQLite: before taking the one connection)
    with db.engine.connect() as connection:
        for table in tables:
            for row in connection.execute(text(f"SELECT * FROM {table}")):
                out.append(repr(tuple(row)))
    return "\n".join(out)


def counts(db: Database) -> Counter[tuple[Any, ...]]:
    with db.sessions() as session:
        entered = session.execute(select(Run.journey_id, Run.converted_at.is_not(None))).all()
    return Counter(tuple(row) for row in entered)


def test_forget_erases_everything_personal_and_nothing_reaches_her_afterwards(
    db: Database, clock: Clock
) -> None:
    live, sender = setup_engine(db, clock)
    mid_journey(db, live, clock)
    before = counts(db)
    text_before = everything(db)
    assert PII["email"] in text_before and "anon-li" in text_before
    sent_before = len(sender.calls)
    with db.transaction() as session:
        erasure = forget(session, "li", clock())
    assert erasure.user_key == "user:li" and erasure.ids == 2 and erasure.runs_ended >= 2
    remaining = everything(db)
    for value in ("li.na@example.com", "13912345678", "李娜", "fcm-token-li-na", "anon-li",
                  "'li'", "user:li", "p1"):  # fmt: skip
        assert value not in remaining, value
    clock.advance(timedelta(days=3))  # every wait of every journey comes due
    apply_until_idle(live)
    assert len(sender.calls) == sent_before  # nothing more went out
    assert counts(db) == before  # entries and conversions still counted
    with db.transaction() as session:
        again = forget(session, "li", clock())  # idempotent
    assert again.user_key is None


def test_later_events_are_dropped_until_an_identify_brings_new_consent(
    db: Database, clock: Clock
) -> None:
    live, _ = setup_engine(db, clock)
    mid_journey(db, live, clock)
    with db.transaction() as session:
        forget(session, "li", clock())
    ingest = Ingestor(db)
    ingest.ingest(
        [
            {"type": "identify", "userId": "li", "traits": {"email": "li.na@example.com"},
             "messageId": "late1"},
            {"type": "track", "anonymousId": "anon-li", "event": "Product Added",
             "messageId": "late2"},
        ],
        now=clock(),
    )  # fmt: skip
    apply_until_idle(live)
    with db.sessions() as session:
        late = dict(session.execute(select(StoredEvent.message_id, StoredEvent.status)).all())
        dropped = session.scalar(select(func.sum(Forgotten.dropped)))
        assert (
            session.scalar(select(func.count()).select_from(Run).where(Run.user_key == "user:li"))
            == 0
        )
    assert late["late1"] == late["late2"] == "dropped" and dropped == 2
    assert "li.na@example.com" not in everything(db)
    ingest.ingest(
        [{"type": "identify", "userId": "li", "messageId": "back",
          "traits": {"email": "li.new@example.com", "subscriptions": {"email": True}}},
         {"type": "track", "userId": "li", "event": "Signed Up", "messageId": "back2"}],
        now=clock(),
    )  # fmt: skip
    apply_until_idle(live)
    with db.sessions() as session:
        statuses = dict(session.execute(select(StoredEvent.message_id, StoredEvent.status)).all())
        runs = session.scalars(select(Run.journey_id).where(Run.user_key == "user:li")).all()
    assert statuses["back"] == statuses["back2"] == "processed"
    assert runs == ["welcome_series"]  # a new start


def test_a_message_already_claimed_by_a_dispatcher_is_not_sent(db: Database, clock: Clock) -> None:
    live, sender = setup_engine(db, clock)
    Ingestor(db).ingest(
        [{"type": "identify", "userId": "li", "traits": PII, "messageId": "m1"},
         {"type": "track", "userId": "li", "event": "Signed Up", "messageId": "m2"}],
        now=clock(),
    )  # fmt: skip
    live.apply()
    claim = live.outbox.claim()
    live.outbox.prepare(claim)
    assert claim.ids
    with db.transaction() as session:
        forget(session, "li", clock())
    live.outbox.send(claim)
    live.outbox.record(claim)
    assert sender.calls == []
    with db.sessions() as session:
        statuses = set(session.scalars(select(Message.status)))
    assert statuses == {"cancelled"}


def test_export_holds_everything_and_is_json(db: Database, clock: Clock) -> None:
    live, _ = setup_engine(db, clock)
    mid_journey(db, live, clock)
    with db.sessions() as session:
        document = export(session, "li")
    assert document is not None
    orjson.dumps(document)  # machine-readable as it is
    assert document["profile"]["email"] == PII["email"]
    assert {i["id"] for i in document["ids"]} == {"li", "anon-li"}
    assert document["consent"]["current"] == {"sms": True}
    assert [e["message_id"] for e in document["events"]] == ["m1", "m2", "m3"]
    assert document["events"][0]["payload"]["properties"]["product_id"] == "p1"
    assert {r["journey"] for r in document["runs"]} == {"cart_abandon", "welcome_series"}
    assert document["messages"] and all("content" in m for m in document["messages"])
    with db.sessions() as session:
        assert export(session, "nobody") is None


def test_retention_purges_old_payloads_and_contents_but_keeps_the_counts(
    db: Database, clock: Clock
) -> None:
    live, _ = setup_engine(db, clock)
    mid_journey(db, live, clock)
    clock.advance(timedelta(days=2))
    apply_until_idle(live)
    before = counts(db)
    purged = purge(db, clock() + timedelta(days=91), timedelta(days=90), batch=2)
    assert purged.events == 3 and purged.messages >= 1
    with db.sessions() as session:
        payloads = session.scalars(select(StoredEvent.payload)).all()
        contents = session.scalars(select(Message.content)).all()
    assert payloads == [{}, {}, {}] and set(map(str, contents)) <= {"None"}
    assert counts(db) == before
    assert purge(db, clock() + timedelta(days=91), timedelta(days=90)).events == 0
