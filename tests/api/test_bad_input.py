"""Input no store can hold gets a 400 naming the field, the same on SQLite and PostgreSQL;
the valid messages beside it are stored; nothing answers 5xx.

Every test runs on both stores (the ``db`` fixture is parametrized).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError

import engine.store.ingest as ingest_module
from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import MAX_REPORTED
from engine.store.schema import DeadLetter, Identity
from tests.api.support import ADMIN, AUTH, body, events, track

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "good-1"}


def post_batch(client: TestClient, raw: bytes) -> Any:
    return client.post("/v1/batch", content=raw, headers=AUTH)


def batch_with(bad: bytes) -> bytes:
    """A batch of one valid message and ``bad`` (raw JSON text of a message)."""
    return b'{"batch": [' + orjson.dumps(GOOD) + b", " + bad + b"]}"


# --------------------------------------------------------------------------- lone surrogates


SURROGATES = [
    pytest.param(b'{"type": "track", "userId": "\\ud800", "event": "e"}', "userId", id="json"),
    pytest.param(
        b'{"type": "track", "userId": "\xed\xa0\x80", "event": "e"}', "userId", id="bytes"
    ),
    pytest.param(
        b'{"type": "track", "userId": "u", "event": "e", "properties": {"k": "a\\udfffb"}}',
        "properties.k",
        id="property",
    ),
    pytest.param(
        b'{"type": "track", "userId": "u", "event": "e", "properties": {"\\ud83d": 1}}',
        "properties.\\ud83d",
        id="key",
    ),
]


@pytest.mark.parametrize(("raw", "field"), SURROGATES)
def test_a_lone_surrogate_is_400_and_the_batch_keeps_its_valid_message(
    raw: bytes, field: str, client: TestClient, db: Database
) -> None:
    single = client.post("/v1/track", content=raw, headers=AUTH)
    assert single.status_code == 400, single.text
    assert single.json()["field"] == field
    response = post_batch(client, batch_with(raw))
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert "surrogate" in response.json()["message"]
    assert response.json()["stored"] == 1
    assert [row.message_id for row in events(db)] == ["good-1"]


def test_a_surrogate_pair_is_text_and_stored(client: TestClient, db: Database) -> None:
    raw = b'{"userId": "u", "event": "\\ud83d\\ude00", "messageId": "emoji"}'
    assert client.post("/v1/track", content=raw, headers=AUTH).status_code == 200
    [row] = events(db)
    assert row.payload["event"] == "\U0001f600"


def test_a_surrogate_write_key_in_the_body_is_401(client: TestClient) -> None:
    raw = b'{"writeKey": "\\ud800", "userId": "u", "event": "e"}'
    assert client.post("/v1/track", content=raw).status_code == 401


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_timestamp_beyond_the_range_in_utc_is_400(
    timestamp: str, client: TestClient, db: Database
) -> None:
    bad = orjson.dumps({"type": "track", "userId": "u", "event": "e", "timestamp": timestamp})
    response = post_batch(client, batch_with(bad))
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "timestamp"
    assert "out of range" in response.json()["message"]
    assert [row.message_id for row in events(db)] == ["good-1"]


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00-01:00", "9999-12-31T23:59:59Z"])
def test_timestamps_at_the_edge_but_in_range_are_stored(
    timestamp: str, client: TestClient, db: Database
) -> None:
    message = {"userId": "u", "event": "e", "timestamp": timestamp, "messageId": "edge"}
    response = client.post("/v1/track", content=body(message), headers=AUTH)
    assert response.status_code == 200, response.text
    assert len(events(db)) == 1


# --------------------------------------------------------------------------- NUL


NULS = [
    ({"userId": "a\u0000b"}, "userId"),
    ({"anonymousId": "\u0000", "userId": None}, "anonymousId"),
    ({"messageId": "m\u0000"}, "messageId"),
    ({"event": "Signed\u0000Up"}, "event"),
    ({"properties": {"note": "x\u0000y"}}, "properties.note"),
    ({"properties": {"list": [1, "\u0000"]}}, "properties.list.1"),
    ({"context": {"ip\u0000": "1"}}, "context.ip\\u0000"),
]


@pytest.mark.parametrize(("change", "field"), NULS)
def test_nul_is_400_naming_the_field_on_both_stores(
    change: dict[str, Any], field: str, client: TestClient, db: Database
) -> None:
    bad = {"type": "track", "userId": "u", "event": "e", **change}
    response = post_batch(client, body({"batch": [GOOD, bad]}))
    assert response.status_code == 400, response.text  # never 503: it is not temporary
    answer = response.json()
    assert (answer["field"], answer["stored"], answer["rejected_count"]) == (field, 1, 1)
    assert "NUL" in answer["message"]
    assert [row.message_id for row in events(db)] == ["good-1"]


def test_an_alias_with_nul_is_refused_not_dead_lettered_later(
    client: TestClient, db: Database
) -> None:
    alias = {"userId": "u1", "previousId": "anon\u0000"}
    response = client.post("/v1/alias", content=body(alias), headers=AUTH)
    assert response.status_code == 400
    assert response.json()["field"] == "previousId"
    good = {"userId": "u1", "previousId": "anon-1", "messageId": "alias-1"}
    assert client.post("/v1/alias", content=body(good), headers=AUTH).status_code == 200
    deploy(db, SourceTree.from_directory(ROOT / "journeys"))
    apply_until_idle(LiveEngine(db))
    with db.transaction() as session:
        assert session.query(DeadLetter).count() == 0
        assert session.get(Identity, "anon:anon-1") is not None


def test_a_batch_context_with_nul_rejects_the_items_it_applies_to(
    client: TestClient, db: Database
) -> None:
    payload = {"batch": [GOOD], "context": {"page": {"title": "\u0000"}}}
    response = post_batch(client, body(payload))
    assert response.status_code == 400
    assert response.json()["field"] == "context.page.title"
    assert events(db) == []


def test_the_admin_api_answers_404_for_ids_that_cannot_exist(client: TestClient) -> None:
    for user_id in ("a%00b", "%ED%A0%80", "%00"):
        response = client.get(f"/api/users/{user_id}", headers=ADMIN)
        assert response.status_code == 404, (user_id, response.text)


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    "header",
    [b"Basic \xff\xfe", b"Basic \xc3\xa9", b"Basic //79", b"Bearer \xff", b"\xff\xfe"],
    ids=["latin-1", "utf-8", "base64-of-non-utf8", "bearer", "no-scheme"],
)
def test_credentials_that_are_not_ascii_are_401(
    header: bytes, client: TestClient, db: Database
) -> None:
    response = client.post("/v1/track", content=body(track()), headers={"Authorization": header})
    assert response.status_code == 401
    assert events(db) == []
    admin = client.get("/api/journeys", headers={"Authorization": header})
    assert admin.status_code == 401


# --------------------------------------------------------------------------- amplification


def test_a_batch_of_250000_bad_items_gets_a_short_answer_and_one_log_line(
    client: TestClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    raw = b'{"batch": [' + b",".join([b"0"] * 250_000) + b"]}"
    assert len(raw) < 500 * 1024
    caplog.set_level(logging.INFO, logger="journey.ingest")
    response = post_batch(client, raw)
    assert response.status_code == 400
    answer = response.json()
    assert answer["received"] == answer["rejected_count"] == 250_000
    assert len(answer["rejected"]) == MAX_REPORTED
    assert answer["rejected"][0] == {
        "index": 0,
        "messageId": None,
        "field": "",
        "error": "a message must be a JSON object",
    }
    assert len(response.content) < 32 * 1024
    assert answer["message"].startswith("250000 of 250000 messages rejected; message 0:")
    lines = [r for r in caplog.records if r.name == "journey.ingest"]
    assert len(lines) == 1
    assert "rejected=250000" in lines[0].getMessage()
    assert "249995 more" in lines[0].getMessage()


# --------------------------------------------------------------------------- refused rows


def test_a_row_the_database_refuses_is_rejected_alone(
    app: FastAPI, client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should validation ever let through something a database refuses, the valid
    messages of the batch are still stored, and the answer is 400, not 5xx."""
    real = ingest_module.insert_events

    def refusing(session: Any, rows: Any) -> set[str]:
        if any(row["message_id"] == "refused" for row in rows):
            raise DataError("INSERT", {}, Exception("value the database cannot hold"))
        return real(session, rows)

    monkeypatch.setattr(ingest_module, "insert_events", refusing)
    batch = [GOOD, {**GOOD, "messageId": "refused"}, {**GOOD, "messageId": "good-2"}]
    response = post_batch(client, body({"batch": batch}))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert (answer["accepted"], answer["stored"], answer["rejected_count"]) == (2, 2, 1)
    assert answer["rejected"][0]["index"] == 1
    assert "refused" in answer["rejected"][0]["error"]
    assert sorted(row.message_id for row in events(db)) == ["good-1", "good-2"]
