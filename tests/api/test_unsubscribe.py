"""/unsubscribe/{message_id}: a synthetic identify through the ingest path, and a page."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from engine.events import parse_message
from engine.store.database import Database
from engine.store.schema import Message
from tests.api.conftest import Wakes
from tests.api.support import events

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def add_message(db: Database, message_id: str, user_key: str, channel: str) -> None:
    with db.transaction() as session:
        session.add(
            Message(
                message_id=message_id,
                run_id="r1",
                user_key=user_key,
                journey_id="welcome",
                step="hello",
                channel=channel,
                status="sent",
                reason=None,
                send_at=T0,
                content={"subject": "Hi"},
                created_at=T0,
                updated_at=T0,
            )
        )


def test_unsubscribe_a_user(client: TestClient, db: Database, wakes: Wakes) -> None:
    add_message(db, "msg-1", "user:u42", "email")
    response = client.get("/unsubscribe/msg-1")  # no credentials: it is a link in an email
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "You are unsubscribed" in response.text
    assert "您已退订" in response.text
    [row] = events(db)
    assert row.message_id == "unsubscribe-msg-1"
    assert (row.type, row.user_id, row.anonymous_id, row.status) == (
        "identify",
        "u42",
        None,
        "pending",
    )
    assert row.payload["traits"] == {"subscriptions": {"email": False}}
    event = parse_message(row.payload)  # the consumer can read it like any other
    assert event.traits == {"subscriptions": {"email": False}}
    assert wakes.count == 1


def test_a_second_click_changes_nothing(client: TestClient, db: Database, wakes: Wakes) -> None:
    add_message(db, "msg-2", "user:u42", "sms")
    assert client.get("/unsubscribe/msg-2").status_code == 200
    assert client.get("/unsubscribe/msg-2").status_code == 200
    assert [row.message_id for row in events(db)] == ["unsubscribe-msg-2"]
    assert wakes.count == 1


def test_unsubscribe_an_anonymous_user(client: TestClient, db: Database) -> None:
    add_message(db, "msg-3", "anon:a-9", "push")
    assert client.get("/unsubscribe/msg-3").status_code == 200
    [row] = events(db)
    assert (row.user_id, row.anonymous_id) == (None, "a-9")
    assert row.payload["traits"] == {"subscriptions": {"push": False}}


def test_one_click_post(client: TestClient, db: Database) -> None:
    add_message(db, "msg-4", "user:u7", "email")
    response = client.post(
        "/unsubscribe/msg-4",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert [row.message_id for row in events(db)] == ["unsubscribe-msg-4"]


def test_unknown_message_is_404(client: TestClient, db: Database, wakes: Wakes) -> None:
    response = client.get("/unsubscribe/nope")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "此链接无效" in response.text
    assert events(db) == []
    assert wakes.count == 0
