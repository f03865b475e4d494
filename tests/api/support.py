"""Helpers shared by the API tests: credentials, requests, reading the events table."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson
from sqlalchemy import select

from engine.store.database import Database
from engine.store.schema import StoredEvent

WRITE_KEY = "wk_live_test"
OTHER_WRITE_KEY = "wk_second"
ADMIN_TOKEN = "admin-token-for-tests"
SECRET_KEY = "secret-key-for-tests-0123456789"


def basic(user: str, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic(WRITE_KEY)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def body(data: Any) -> bytes:
    return orjson.dumps(data)


def gzipped(data: Any) -> bytes:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return gzip.compress(raw)


def events(db: Database) -> list[StoredEvent]:
    """Every stored event, in ``seq`` order."""
    with db.transaction() as session:
        return list(session.scalars(select(StoredEvent).order_by(StoredEvent.seq)))


def track(message_id: str | None = "m-1", user_id: str = "u42", **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "userId": user_id,
        "properties": {"order_id": "o1", "total": 99.5},
        "timestamp": "2026-03-01T10:00:00Z",
    }
    if message_id is not None:
        message["messageId"] = message_id
    message.update(extra)
    return message
