"""The user book's writes: new messages are checked against the database all at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from engine.store.database import Database
from engine.store.schema import Message
from engine.store.users import SqlUserBook

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def message(message_id: str, status: str) -> Message:
    return Message(
        message_id=message_id, run_id="r1", user_key="user:u", journey_id="j", version="v",
        step="say", channel="sms", attempt=0, tries=0, status=status, reason=None,
        send_at=NOW, created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def test_a_message_added_as_new_that_exists_updates_the_stored_row(db: Database) -> None:
    with db.transaction() as session:
        session.add(message("m-old", "sent"))
    with db.transaction() as session:
        book = SqlUserBook(session, NOW + timedelta(hours=1), timedelta(0))
        for message_id in ("m-old", "m-new"):
            added = message(message_id, "pending")
            added.updated_at = NOW + timedelta(hours=1)
            session.add(added)
            book.unverified[message_id] = added
        book.flush()
    with db.transaction() as session:
        rows = {m.message_id: m for m in session.scalars(select(Message))}
        assert session.scalar(select(func.count()).select_from(Message)) == 2
    assert rows["m-old"].status == "pending" and rows["m-old"].created_at == NOW
    assert rows["m-old"].updated_at == NOW + timedelta(hours=1)
    assert rows["m-new"].status == "pending"
