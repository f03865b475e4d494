"""Storing Segment messages: validate each, store the valid ones in one transaction.

Used by the HTTP API and by anything else that accepts events (tests, imports). After
the commit, ``on_ingest`` is told which partitions got new events (a doorbell). A
message gets a ``messageId`` (uuid4) and a ``timestamp`` (the receive time) when it
has none; one already stored under its ``messageId`` is a duplicate, counted, not an
error. The rows are ``pending`` until the engine applies them.

Whatever an item holds, it is either stored or rejected naming its field, the same way on
SQLite and PostgreSQL: text no store can hold (NUL, unpaired surrogates) is refused before
the insert, and should the database still refuse a row for its content, the rows are
inserted one by one so only that row is rejected. A result lists the first
``MAX_REPORTED`` rejections and counts them all, and the log gets one summary line.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.orm import Session

from engine.durations import iso_z
from engine.errors import EngineError, InvalidMessage
from engine.events import Event, parse_message, printable, unstorable_text
from engine.identity import routing_key
from engine.metrics import EVENTS
from engine.store.database import Database
from engine.store.partitions import partition_of
from engine.store.schema import StoredEvent

log = logging.getLogger("journey.ingest")

KB = 1024
MAX_MESSAGE_BYTES = 32 * KB  # one message (Segment's limit)
#: Rejections listed in a result (and an answer); the rest are only counted, so a batch
#: of 250,000 bad items gets a short answer.
MAX_REPORTED = 100
#: Rejections named in the log's summary line.
MAX_LOGGED = 5


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
    rejected: list[Rejection] = field(default_factory=list)  # the first MAX_REPORTED
    rejected_count: int = 0  # all of them
    too_large: bool = False  # some item was over MAX_MESSAGE_BYTES

    @property
    def duplicates(self) -> int:
        return self.accepted - self.stored

    def reject(self, rejection: Rejection) -> None:
        self.rejected_count += 1
        self.too_large |= rejection.too_large
        if len(self.rejected) < MAX_REPORTED:
            self.rejected.append(rejection)

    def as_json(self) -> dict[str, Any]:
        return {
            "success": not self.rejected_count,
            "received": self.received,
            "accepted": self.accepted,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": [r.as_json() for r in self.rejected],
            "rejected_count": self.rejected_count,
        }

    def log_summary(self) -> None:
        named = "; ".join(
            f"index={r.index} messageId={r.message_id or '-'} field={r.field or '-'}"
            for r in self.rejected[:MAX_LOGGED]
        )
        more = self.rejected_count - min(len(self.rejected), MAX_LOGGED)
        log.info(
            "ingest: received=%d accepted=%d stored=%d duplicates=%d rejected=%d%s",
            self.received,
            self.accepted,
            self.stored,
            self.duplicates,
            self.rejected_count,
            f" ({named}{f'; {more} more' if more else ''})" if named else "",
        )


def _message_id_of(item: Any) -> str | None:
    if isinstance(item, dict):
        value = item.get("messageId")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return printable(str(value))[:512]
    return None


def _json_size(item: Any) -> tuple[int, bool]:
    """The size of ``item`` as compact UTF-8 JSON, and whether it may hold text no store
    can hold (then :func:`~engine.events.unstorable_text` says where)."""
    try:
        data = orjson.dumps(item)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, or a lone surrogate
        text = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
        return len(text.encode("utf-8", "surrogatepass")), True
    return len(data), b"\\u0000" in data


def _refused_by_the_store(exc: SQLAlchemyError) -> bool:
    """Whether the database refused a statement for the data in it (a row would be refused
    again), as opposed to being unavailable (worth a retry)."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    # Raised while binding parameters, before the database saw anything.
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


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


#: The columns an event row is inserted with, in order.
COLUMNS = (
    "message_id",
    "type",
    "user_id",
    "anonymous_id",
    "user_key",
    "partition",
    "timestamp",
    "received_at",
    "payload",
    "status",
)
# PostgreSQL: the rows go as one JSON document, turned back into rows by the server. The
# statement is the same whatever the batch, and nothing is escaped value by value.
_FROM_JSON = text(
    "INSERT INTO events (" + ", ".join(COLUMNS) + ") "
    "SELECT " + ", ".join(COLUMNS) + " FROM json_to_recordset(CAST(:rows AS json)) AS r("
    "message_id text, type text, user_id text, anonymous_id text, user_key text, "
    "partition integer, timestamp timestamptz, received_at timestamptz, payload json, "
    "status text) ON CONFLICT (message_id) DO NOTHING RETURNING message_id"
)


def json_text(value: Any) -> str:
    """``value`` as JSON text, datetimes as ISO 8601 (orjson; the standard library for what
    orjson refuses, such as integers beyond 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), default=datetime.isoformat
        )


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert ``rows`` into ``events``, ignoring message ids already there; returns the
    message ids actually inserted.

    PostgreSQL: one ``INSERT ... SELECT FROM json_to_recordset(...) ON CONFLICT DO NOTHING
    RETURNING``, the rows as one JSON document. SQLite: the same insert, executed for all
    rows at once (SQLAlchemy sends them in multi-row statements).
    """
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return set(session.scalars(_FROM_JSON, {"rows": json_text(list(rows))}))
    if dialect != "sqlite":  # pragma: no cover - the store supports SQLite and PostgreSQL
        raise EngineError(f"unsupported database dialect {dialect!r}")
    stmt = (
        sqlite.insert(StoredEvent)
        .on_conflict_do_nothing(index_elements=[StoredEvent.message_id])
        .returning(StoredEvent.message_id)
    )
    return set(session.scalars(stmt, list(rows)))


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
        indexes: list[int] = []  # the item each row came from
        seen: set[str] = set()
        defaults_suspect = bool(defaults) and _json_size(dict(defaults or {}))[1]
        for index, item in enumerate(items):
            try:
                size, suspect = _json_size(item)
            except RecursionError:
                result.reject(Rejection(index, None, "", "nested too deeply"))
                continue
            if size > MAX_MESSAGE_BYTES:
                result.reject(
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
                if (suspect or defaults_suspect) and (bad := unstorable_text(payload)):
                    raise InvalidMessage(*bad)
                event = parse_message(payload)
            except InvalidMessage as exc:
                result.reject(Rejection(index, _message_id_of(item), exc.field, str(exc)))
                continue
            result.accepted += 1
            if event.message_id in seen:
                continue  # a duplicate inside the same request
            seen.add(event.message_id)
            assert isinstance(payload, dict)
            rows.append(_row(event, payload, received_at))
            indexes.append(index)
        partitions: set[int] = set()
        if rows:
            inserted = self._insert(rows, indexes, result)
            result.stored = len(inserted)
            partitions = {row["partition"] for row in rows if row["message_id"] in inserted}
        result.log_summary()
        EVENTS.labels("accepted").inc(result.stored)
        if result.duplicates:
            EVENTS.labels("duplicate").inc(result.duplicates)
        if result.rejected_count:
            EVENTS.labels("rejected").inc(result.rejected_count)
        if result.stored and self.on_ingest is not None:
            try:
                self.on_ingest(partitions)
            except Exception as exc:  # the events are committed; the consumer polls anyway
                log.error("ingest: on_ingest failed: %s", type(exc).__name__)
        return result

    def _insert(
        self, rows: list[dict[str, Any]], indexes: list[int], result: IngestResult
    ) -> set[str]:
        """Insert ``rows`` in one transaction; if the database refuses one for its content,
        insert them one by one and reject the refused ones. Returns the new message ids."""
        try:
            with self.db.transaction() as session:
                return insert_events(session, rows)
        except SQLAlchemyError as exc:
            if not _refused_by_the_store(exc):
                raise  # unavailable: the caller answers "retry later"
            log.warning("ingest: the store refused a batch (%s); one by one", type(exc).__name__)
        stored: set[str] = set()
        for index, row in zip(indexes, rows, strict=True):
            try:
                with self.db.transaction() as session:
                    stored |= insert_events(session, [row])
            except SQLAlchemyError as exc:
                if not _refused_by_the_store(exc):
                    raise
                result.accepted -= 1
                why = f"the event store refused this message ({type(exc).__name__})"
                result.reject(Rejection(index, printable(row["message_id"]), "", why))
        return stored


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
