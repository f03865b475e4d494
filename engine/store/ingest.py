"""Storing Segment messages: validate each, store the valid ones in one transaction.

Used by the HTTP API and by anything else that accepts events (tests, imports). After
the commit, ``on_ingest`` is told which partitions got new events (a doorbell). A
message gets a ``messageId`` (uuid4) and a ``timestamp`` (the receive time) when it
has none; one already stored under its ``messageId`` is a duplicate, counted, not an
error. The rows are ``pending`` until the engine applies them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.durations import iso_z
from engine.errors import EngineError, InvalidMessage
from engine.events import Event, parse_message
from engine.store.database import Database
from engine.store.partitions import partition_of, routing_key
from engine.store.schema import StoredEvent

log = logging.getLogger("journey.ingest")

KB = 1024
MAX_MESSAGE_BYTES = 32 * KB  # one message (Segment's limit)


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    message_id: str | None
    field: str
    error: str
    too_large: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "messageId": self.message_id,
            "field": self.field,
            "error": self.error,
        }


@dataclass
class IngestResult:
    received: int = 0
    accepted: int = 0  # valid messages, new or already stored
    stored: int = 0  # newly stored now
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.accepted - self.stored

    def as_json(self) -> dict[str, Any]:
        return {
            "success": not self.rejected,
            "received": self.received,
            "accepted": self.accepted,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": [r.as_json() for r in self.rejected],
        }


def _message_id_of(item: Any) -> str | None:
    if isinstance(item, dict):
        value = item.get("messageId")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    return None


def _json_size(item: Any) -> int:
    try:
        return len(orjson.dumps(item))
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())


def _row(event: Event, payload: dict[str, Any], received_at: datetime) -> dict[str, Any]:
    key = routing_key(event.user_id, event.anonymous_id)
    return {
        "message_id": event.message_id,
        "type": event.type,
        "user_id": event.user_id,
        "anonymous_id": event.anonymous_id,
        "user_key": key,
        "partition": partition_of(key),
        "timestamp": event.timestamp,
        "received_at": received_at,
        "payload": payload,
        "status": "pending",
    }


def _rows_per_statement(dialect: str) -> int:
    columns = 10
    if dialect == "sqlite":
        # SQLITE_MAX_VARIABLE_NUMBER: 999 before SQLite 3.32, 32766 since.
        version = tuple(int(part) for part in sqlite3.sqlite_version.split(".")[:2])
        limit = 999 if version < (3, 32) else 32766
    else:
        limit = 65535
    return max(1, min(1000, limit // columns))


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert ``rows`` into ``events``, ignoring message ids already there.

    One ``INSERT ... ON CONFLICT (message_id) DO NOTHING RETURNING message_id`` per chunk
    (a whole SDK batch is one statement). Returns the message ids actually inserted.
    """
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    inserted: set[str] = set()
    step = _rows_per_statement(dialect)
    for start in range(0, len(rows), step):
        chunk = list(rows[start : start + step])
        stmt: Insert
        if dialect == "postgresql":
            stmt = (
                postgresql.insert(StoredEvent)
                .values(chunk)
                .on_conflict_do_nothing(index_elements=[StoredEvent.message_id])
            )
        elif dialect == "sqlite":
            stmt = (
                sqlite.insert(StoredEvent)
                .values(chunk)
                .on_conflict_do_nothing(index_elements=[StoredEvent.message_id])
            )
        else:  # pragma: no cover - the store supports SQLite and PostgreSQL only
            raise EngineError(f"unsupported database dialect {dialect!r}")
        inserted.update(session.scalars(stmt.returning(StoredEvent.message_id)))
    return inserted


class Ingestor:
    """Validates Segment messages and stores the valid ones, one transaction per call."""

    def __init__(
        self, db: Database, on_ingest: Callable[[Collection[int]], None] | None = None
    ) -> None:
        self.db = db
        self.on_ingest = on_ingest

    def ingest(
        self,
        items: Sequence[Any],
        *,
        defaults: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> IngestResult:
        """Store the valid ``items``; report the others. ``defaults`` fill missing keys
        (the batch-level ``context``/``integrations``; dicts merge, the item's keys win)."""
        received_at = (now or datetime.now(UTC)).astimezone(UTC)
        result = IngestResult(received=len(items))
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            size = _json_size(item)
            if size > MAX_MESSAGE_BYTES:
                result.rejected.append(
                    Rejection(
                        index,
                        _message_id_of(item),
                        "",
                        f"message is {size} bytes, over the {MAX_MESSAGE_BYTES // KB} KB limit",
                        too_large=True,
                    )
                )
                continue
            payload = _prepared(item, defaults, received_at)
            try:
                event = parse_message(payload)
            except InvalidMessage as exc:
                result.rejected.append(Rejection(index, _message_id_of(item), exc.field, str(exc)))
                continue
            result.accepted += 1
            if event.message_id in seen:
                continue  # a duplicate inside the same request
            seen.add(event.message_id)
            assert isinstance(payload, dict)
            rows.append(_row(event, payload, received_at))
        partitions: set[int] = set()
        if rows:
            with self.db.transaction() as session:
                inserted = insert_events(session, rows)
            result.stored = len(inserted)
            partitions = {row["partition"] for row in rows if row["message_id"] in inserted}
        log.info(
            "ingest: received=%d accepted=%d stored=%d duplicates=%d rejected=%d",
            result.received,
            result.accepted,
            result.stored,
            result.duplicates,
            len(result.rejected),
        )
        for rejection in result.rejected:
            log.info(
                "ingest: rejected index=%d messageId=%s field=%s",
                rejection.index,
                rejection.message_id,
                rejection.field or "-",
            )
        if result.stored and self.on_ingest is not None:
            try:
                self.on_ingest(partitions)
            except Exception as exc:  # the events are committed; the consumer polls anyway
                log.error("ingest: on_ingest failed: %s", type(exc).__name__)
        return result


def _prepared(item: Any, defaults: Mapping[str, Any] | None, received_at: datetime) -> Any:
    """The payload to validate and store: the item plus what is missing (messageId,
    timestamp, batch defaults)."""
    if not isinstance(item, dict):
        return item
    payload = dict(item)
    payload.pop("writeKey", None)  # a credential, not part of the event
    for key, value in (defaults or {}).items():
        mine = payload.get(key)
        if mine is None:
            payload[key] = value
        elif isinstance(mine, dict) and isinstance(value, dict):
            payload[key] = {**value, **mine}
    if payload.get("messageId") is None:
        payload["messageId"] = str(uuid.uuid4())
    if payload.get("timestamp") is None:
        payload["timestamp"] = iso_z(received_at)
    return payload
