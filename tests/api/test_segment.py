"""The Segment tracking API through FastAPI's TestClient: every status code and rule."""

from __future__ import annotations

import gzip
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from engine.events import parse_message
from engine.store.database import Database
from engine.store.partitions import partition_of
from tests.api.conftest import Wakes
from tests.api.support import (
    AUTH,
    OTHER_WRITE_KEY,
    WRITE_KEY,
    basic,
    body,
    events,
    gzipped,
    track,
)

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)

VALID: dict[str, dict[str, Any]] = {
    "track": {"event": "Signed Up", "userId": "u1", "properties": {"plan": "pro"}},
    "identify": {"userId": "u1", "anonymousId": "a1", "traits": {"locale": "zh-CN"}},
    "page": {"anonymousId": "a1", "name": "Pricing", "properties": {"path": "/pricing"}},
    "screen": {"userId": "u1", "name": "Home"},
    "alias": {"userId": "u1", "previousId": "a1"},
    "group": {"userId": "u1", "groupId": "g1", "traits": {"name": "ACME"}},
}


# --------------------------------------------------------------------------- single messages


def test_track_is_stored_and_committed_before_the_answer(
    client: TestClient, db: Database, wakes: Wakes
) -> None:
    before = datetime.now(UTC)
    response = client.post("/v1/track", content=body(track()), headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "received": 1,
        "accepted": 1,
        "stored": 1,
        "duplicates": 0,
        "rejected": [],
        "rejected_count": 0,
    }
    [row] = events(db)
    assert row.message_id == "m-1"
    assert row.type == "track"
    assert row.user_id == "u42"
    assert row.anonymous_id is None
    assert row.timestamp == T0
    assert before - timedelta(seconds=1) <= row.received_at <= datetime.now(UTC)
    assert row.payload == track()
    assert row.status == "pending"
    assert (row.user_key, row.partition) == ("user:u42", partition_of("user:u42"))
    assert wakes.count == 1 and wakes.partitions == {row.partition}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_path_sets_the_type_when_the_body_has_none(
    kind: str, client: TestClient, db: Database
) -> None:
    message = {**VALID[kind], "messageId": f"m-{kind}"}
    response = client.post(f"/v1/{kind}", content=body(message), headers=AUTH)
    assert response.status_code == 200, response.text
    [row] = events(db)
    assert row.type == kind
    assert row.payload["type"] == kind
    assert row.message_id == f"m-{kind}"


def test_the_body_type_wins_over_the_path(client: TestClient, db: Database) -> None:
    message = {**VALID["identify"], "type": "identify", "messageId": "m-x"}
    assert client.post("/v1/track", content=body(message), headers=AUTH).status_code == 200
    assert [row.type for row in events(db)] == ["identify"]


def test_alias_stores_user_id_and_keeps_previous_id(client: TestClient, db: Database) -> None:
    message = {"userId": "u9", "previousId": "anon-9", "messageId": "al-1"}
    assert client.post("/v1/alias", content=body(message), headers=AUTH).status_code == 200
    [row] = events(db)
    assert (row.type, row.user_id, row.anonymous_id) == ("alias", "u9", None)
    assert row.payload["previousId"] == "anon-9"


def test_identify_keeps_both_ids(client: TestClient, db: Database) -> None:
    message = {**VALID["identify"], "messageId": "i-1"}
    assert client.post("/v1/identify", content=body(message), headers=AUTH).status_code == 200
    [row] = events(db)
    assert (row.user_id, row.anonymous_id) == ("u1", "a1")
    assert row.payload["traits"] == {"locale": "zh-CN"}


def test_identify_traits_from_context_traits(client: TestClient, db: Database) -> None:
    # RudderStack SDKs put identify traits in context.traits only; the root wins when both.
    rudder = {"userId": "u1", "context": {"traits": {"plan": "pro"}}, "messageId": "r-1"}
    both = {**rudder, "traits": {"plan": "free"}, "messageId": "r-2"}
    for message in (rudder, both):
        assert client.post("/v1/identify", content=body(message), headers=AUTH).is_success
    first, second = events(db)
    assert parse_message(first.payload).traits == {"plan": "pro"}
    assert parse_message(second.payload).traits == {"plan": "free"}


def test_missing_message_id_and_timestamp_are_filled_in(client: TestClient, db: Database) -> None:
    message = track(message_id=None)
    del message["timestamp"]
    before = datetime.now(UTC)
    assert client.post("/v1/track", content=body(message), headers=AUTH).status_code == 200
    [row] = events(db)
    assert uuid.UUID(row.message_id).version == 4
    assert row.payload["messageId"] == row.message_id
    assert row.timestamp == row.received_at
    assert before - timedelta(seconds=1) <= row.timestamp <= datetime.now(UTC)
    assert row.payload["timestamp"].endswith("Z")
    assert datetime.fromisoformat(row.payload["timestamp"]) == row.timestamp


def test_null_message_id_is_filled_in_too(client: TestClient, db: Database) -> None:
    message = track(message_id=None, messageId=None)
    assert client.post("/v1/track", content=body(message), headers=AUTH).status_code == 200
    assert uuid.UUID(events(db)[0].message_id)


def test_numeric_ids_are_stored_as_text(client: TestClient, db: Database) -> None:
    message = track(message_id=None, userId=42, messageId=7)
    assert client.post("/v1/track", content=body(message), headers=AUTH).status_code == 200
    [row] = events(db)
    assert (row.user_id, row.message_id) == ("42", "7")


def test_the_write_key_in_the_body_is_not_stored(client: TestClient, db: Database) -> None:
    message = track(writeKey=WRITE_KEY)
    assert client.post("/v1/track", content=body(message)).status_code == 200
    [row] = events(db)
    assert "writeKey" not in row.payload


def test_an_invalid_message_is_400_naming_the_field(
    client: TestClient, db: Database, wakes: Wakes
) -> None:
    message = track()
    del message["event"]
    response = client.post("/v1/track", content=body(message), headers=AUTH)
    assert response.status_code == 400
    data = response.json()
    assert data["success"] is False
    assert data["code"] == "invalid_message"
    assert data["field"] == "event"
    assert "event" in data["message"]
    assert data["accepted"] == 0
    assert data["rejected"] == [
        {"index": 0, "messageId": "m-1", "field": "event", "error": data["rejected"][0]["error"]}
    ]
    assert events(db) == []
    assert wakes.count == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"userId": None}, "userId"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"properties": [1, 2]}, "properties"),
        ({"event": ""}, "event"),
        ({"messageId": ""}, "messageId"),
    ],
)
def test_invalid_fields_are_named(
    change: dict[str, Any], field: str, client: TestClient, db: Database
) -> None:
    message = {k: v for k, v in {**track(), **change}.items() if v is not None}
    response = client.post("/v1/track", content=body(message), headers=AUTH)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["rejected"][0]["field"] == field
    assert events(db) == []


def test_unknown_type_is_rejected_naming_type(client: TestClient) -> None:
    message = {**track(), "type": "purchase"}
    response = client.post("/v1/track", content=body(message), headers=AUTH)
    assert response.status_code == 400
    assert response.json()["field"] == "type"


def test_a_body_that_is_not_an_object_is_400(client: TestClient) -> None:
    response = client.post("/v1/track", content=b"[1, 2]", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_message"


# --------------------------------------------------------------------------- batches


def test_batch_all_valid(client: TestClient, db: Database, wakes: Wakes) -> None:
    batch = [{**VALID[kind], "type": kind, "messageId": f"b-{i}"} for i, kind in enumerate(VALID)]
    payload = {"batch": batch, "sentAt": "2026-03-01T10:00:01Z", "writeKey": WRITE_KEY}
    response = client.post("/v1/batch", content=body(payload), headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    assert response.json()["accepted"] == response.json()["stored"] == len(batch)
    rows = events(db)
    assert [row.message_id for row in rows] == [f"b-{i}" for i in range(len(batch))]
    assert [row.type for row in rows] == list(VALID)
    assert wakes.count == 1  # one commit, one wake


def test_import_is_the_old_name_of_batch(client: TestClient, db: Database) -> None:
    response = client.post("/v1/import", content=body({"batch": [track()]}), headers=AUTH)
    assert response.status_code == 200
    assert len(events(db)) == 1


def test_partial_batch_stores_the_valid_messages(
    client: TestClient, db: Database, wakes: Wakes
) -> None:
    no_event = track("bad-1")
    del no_event["event"]
    no_user = track("bad-2")
    del no_user["userId"]
    batch = [track("ok-1"), no_event, track("ok-2"), "not an object", no_user, {"userId": "u"}]
    response = client.post("/v1/batch", content=body({"batch": batch}), headers=AUTH)
    assert response.status_code == 400
    data = response.json()
    assert data["success"] is False
    assert data["code"] == "invalid_message"
    assert (data["received"], data["accepted"], data["stored"]) == (6, 2, 2)
    assert [(r["index"], r["messageId"], r["field"]) for r in data["rejected"]] == [
        (1, "bad-1", "event"),
        (3, None, ""),
        (4, "bad-2", "userId"),
        (5, None, "type"),
    ]
    assert all(r["error"] for r in data["rejected"])
    assert data["message"].startswith("4 of 6 messages rejected")
    assert [row.message_id for row in events(db)] == ["ok-1", "ok-2"]
    assert wakes.count == 1


def test_batch_level_context_applies_to_every_item(client: TestClient, db: Database) -> None:
    payload = {
        "batch": [
            track("c-1"),
            track("c-2", context={"ip": "10.0.0.1", "locale": "en-US"}),
        ],
        "context": {"locale": "zh-CN", "library": {"name": "x"}},
        "integrations": {"All": True},
    }
    assert client.post("/v1/batch", content=body(payload), headers=AUTH).status_code == 200
    first, second = events(db)
    assert first.payload["context"] == {"locale": "zh-CN", "library": {"name": "x"}}
    assert second.payload["context"] == {
        "locale": "en-US",
        "library": {"name": "x"},
        "ip": "10.0.0.1",
    }
    assert first.payload["integrations"] == {"All": True}


@pytest.mark.parametrize("payload", [{}, {"batch": {"a": 1}}, {"batch": "x"}])
def test_batch_without_a_list_is_400(payload: dict[str, Any], client: TestClient) -> None:
    response = client.post("/v1/batch", content=body(payload), headers=AUTH)
    assert response.status_code == 400
    assert response.json()["field"] == "batch"
    assert "batch" in response.json()["message"]


def test_empty_batch_is_fine(client: TestClient, db: Database, wakes: Wakes) -> None:
    response = client.post("/v1/batch", content=body({"batch": []}), headers=AUTH)
    assert response.status_code == 200
    assert response.json()["accepted"] == 0
    assert events(db) == []
    assert wakes.count == 0


# --------------------------------------------------------------------------- duplicates


def test_duplicates_are_ignored_and_counted(client: TestClient, db: Database, wakes: Wakes) -> None:
    payload = {"batch": [track("d-1"), track("d-2")]}
    assert client.post("/v1/batch", content=body(payload), headers=AUTH).status_code == 200
    again = {"batch": [track("d-1"), track("d-3"), track("d-2")]}
    response = client.post("/v1/batch", content=body(again), headers=AUTH)
    assert response.status_code == 200
    assert response.json()["success"] is True
    assert (response.json()["accepted"], response.json()["stored"]) == (3, 1)
    assert response.json()["duplicates"] == 2
    assert [row.message_id for row in events(db)] == ["d-1", "d-2", "d-3"]
    assert wakes.count == 2


def test_a_duplicate_keeps_the_first_payload(client: TestClient, db: Database) -> None:
    assert client.post("/v1/track", content=body(track("x")), headers=AUTH).status_code == 200
    changed = track("x", event="Something Else")
    response = client.post("/v1/track", content=body(changed), headers=AUTH)
    assert response.status_code == 200
    assert response.json()["duplicates"] == 1
    [row] = events(db)
    assert row.payload["event"] == "Order Completed"


def test_duplicates_inside_one_batch(client: TestClient, db: Database, wakes: Wakes) -> None:
    payload = {"batch": [track("same"), track("same"), track("other")]}
    response = client.post("/v1/batch", content=body(payload), headers=AUTH)
    assert response.status_code == 200
    assert (response.json()["accepted"], response.json()["duplicates"]) == (3, 1)
    assert [row.message_id for row in events(db)] == ["same", "other"]


def test_only_duplicates_do_not_wake_the_consumer(
    client: TestClient, db: Database, wakes: Wakes
) -> None:
    client.post("/v1/track", content=body(track("w")), headers=AUTH)
    client.post("/v1/track", content=body(track("w")), headers=AUTH)
    assert wakes.count == 1


# --------------------------------------------------------------------------- JSON and auth


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"   ", b'{"batch": [', b"\xff\xfe", b"[" * 30_000]
)
def test_malformed_json_is_400_with_a_message(raw: bytes, client: TestClient) -> None:
    for path in ("/v1/track", "/v1/batch"):
        response = client.post(path, content=raw, headers=AUTH)
        assert response.status_code == 400
        data = response.json()
        assert data["code"] == "invalid_json"
        assert data["message"]


def test_big_integers_are_kept(client: TestClient, db: Database) -> None:
    raw = body(track("big-int")).replace(b'"total":99.5', b'"total":123456789012345678901234567890')
    assert client.post("/v1/track", content=raw, headers=AUTH).status_code == 200
    assert events(db)[0].payload["properties"]["total"] == 123456789012345678901234567890


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_is_not_json(constant: bytes, client: TestClient, db: Database) -> None:
    raw = body(track("nan")).replace(b"99.5", constant)
    response = client.post("/v1/track", content=raw, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert events(db) == []


def test_missing_key_is_401(client: TestClient, db: Database) -> None:
    for path in ("/v1/track", "/v1/batch"):
        payload = track() if path == "/v1/track" else {"batch": [track()]}
        response = client.post(path, content=body(payload))
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic")
        assert response.json()["code"] == "unauthorized"
    assert events(db) == []


@pytest.mark.parametrize(
    "headers",
    [
        basic("wrong-key"),
        basic(""),
        basic(WRITE_KEY + "x"),
        {"Authorization": f"Bearer {WRITE_KEY}"},
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Basic"},
    ],
)
def test_unknown_key_is_401(headers: dict[str, str], client: TestClient, db: Database) -> None:
    response = client.post("/v1/track", content=body(track()), headers=headers)
    assert response.status_code == 401
    assert events(db) == []


def test_every_configured_key_works_and_the_password_is_ignored(
    client: TestClient, db: Database
) -> None:
    first = client.post("/v1/track", content=body(track("k1")), headers=basic(OTHER_WRITE_KEY))
    assert first.status_code == 200
    response = client.post("/v1/track", content=body(track("k2")), headers=basic(WRITE_KEY, "pw"))
    assert response.status_code == 200
    assert len(events(db)) == 2


def test_write_key_in_the_body(client: TestClient, db: Database) -> None:
    ok = {"batch": [track("wk-1")], "writeKey": WRITE_KEY}
    assert client.post("/v1/batch", content=body(ok)).status_code == 200
    bad = {"batch": [track("wk-2")], "writeKey": "nope"}
    assert client.post("/v1/batch", content=body(bad)).status_code == 401
    assert client.post("/v1/track", content=body(track("wk-3", writeKey=WRITE_KEY))).is_success
    assert [row.message_id for row in events(db)] == ["wk-1", "wk-3"]


def test_unauthenticated_malformed_json_is_401_not_400(client: TestClient) -> None:
    assert client.post("/v1/batch", content=b"{oops").status_code == 401


def test_no_write_keys_configured_refuses_everyone(db: Database) -> None:
    from engine.api import create_app
    from engine.settings import Settings

    app = create_app(db, Settings(write_keys=[]))
    with TestClient(app) as client:
        assert client.post("/v1/track", content=body(track()), headers=AUTH).status_code == 401
        assert client.post("/v1/track", content=body(track(writeKey=""))).status_code == 401


# --------------------------------------------------------------------------- gzip and limits


def test_gzip_batch(client: TestClient, db: Database) -> None:
    payload = {"batch": [track("g-1"), track("g-2")]}
    headers = {**AUTH, "Content-Encoding": "gzip"}
    response = client.post("/v1/batch", content=gzipped(payload), headers=headers)
    assert response.status_code == 200, response.text
    assert [row.message_id for row in events(db)] == ["g-1", "g-2"]


def test_gzip_single_message(client: TestClient, db: Database) -> None:
    headers = {**AUTH, "Content-Encoding": "gzip"}
    response = client.post("/v1/track", content=gzipped(track("g")), headers=headers)
    assert response.status_code == 200
    assert len(events(db)) == 1


def test_gzip_with_several_members(client: TestClient, db: Database) -> None:
    raw = body({"batch": [track("mm-1"), track("mm-2")]})
    two_members = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    headers = {**AUTH, "Content-Encoding": "gzip"}
    assert client.post("/v1/batch", content=two_members, headers=headers).status_code == 200
    assert len(events(db)) == 2


@pytest.mark.parametrize("raw", [b"definitely not gzip", gzipped(track())[:-6]])
def test_bad_gzip_is_400(raw: bytes, client: TestClient, db: Database) -> None:
    headers = {**AUTH, "Content-Encoding": "gzip"}
    response = client.post("/v1/batch", content=raw, headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_gzip"
    assert events(db) == []


def test_zip_bomb_is_413(client: TestClient, db: Database) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (64 * 1024 * 1024) + b"]}")
    assert len(bomb) < 200 * 1024  # small on the wire
    headers = {**AUTH, "Content-Encoding": "gzip"}
    response = client.post("/v1/batch", content=bomb, headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    single = gzip.compress(body(track(properties={"pad": "x" * (40 * 1024)})))
    response = client.post("/v1/track", content=single, headers=headers)
    assert response.status_code == 413
    assert events(db) == []


def test_other_encodings_are_415(client: TestClient) -> None:
    headers = {**AUTH, "Content-Encoding": "br"}
    response = client.post("/v1/batch", content=b"{}", headers=headers)
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_encoding"


def padded(message_id: str, size: int) -> dict[str, Any]:
    """A track message whose JSON is about ``size`` bytes."""
    message = track(message_id, properties={"pad": ""})
    message["properties"]["pad"] = "x" * (size - len(body(message)))
    assert len(body(message)) == size
    return message


def test_single_message_over_32_kb_is_413(client: TestClient, db: Database) -> None:
    response = client.post("/v1/track", content=body(padded("big", 32 * 1024 + 1)), headers=AUTH)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    ok = client.post("/v1/track", content=body(padded("fits", 32 * 1024)), headers=AUTH)
    assert ok.status_code == 200
    assert [row.message_id for row in events(db)] == ["fits"]


def test_batch_item_over_32_kb_is_413_and_the_others_are_stored(
    client: TestClient, db: Database
) -> None:
    batch = [track("small-1"), padded("huge", 40 * 1024), track("small-2")]
    response = client.post("/v1/batch", content=body({"batch": batch}), headers=AUTH)
    assert response.status_code == 413
    data = response.json()
    assert data["code"] == "payload_too_large"
    assert data["accepted"] == 2
    assert [(r["index"], r["messageId"]) for r in data["rejected"]] == [(1, "huge")]
    assert "32 KB" in data["rejected"][0]["error"]
    assert [row.message_id for row in events(db)] == ["small-1", "small-2"]


def test_batch_over_500_kb_is_413_and_nothing_is_stored(client: TestClient, db: Database) -> None:
    batch = [padded(f"p-{i}", 30 * 1024) for i in range(17)]  # 510 KB of messages
    raw = body({"batch": batch})
    assert len(raw) > 500 * 1024
    response = client.post("/v1/batch", content=raw, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    gz = client.post(
        "/v1/batch", content=gzip.compress(raw), headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert gz.status_code == 413  # measured on the decompressed JSON
    assert events(db) == []


def test_batch_just_under_500_kb_is_accepted(client: TestClient, db: Database) -> None:
    batch = [padded(f"p-{i}", 30 * 1024) for i in range(16)]  # 480 KB
    response = client.post("/v1/batch", content=body({"batch": batch}), headers=AUTH)
    assert response.status_code == 200
    assert len(events(db)) == 16


def test_many_small_messages_in_one_batch(client: TestClient, db: Database) -> None:
    batch = [track(f"s-{i}") for i in range(1500)]  # more rows than one SQLite statement holds
    response = client.post("/v1/batch", content=body({"batch": batch}), headers=AUTH)
    assert response.status_code == 200
    assert response.json()["stored"] == 1500
    assert [row.message_id for row in events(db)] == [f"s-{i}" for i in range(1500)]


# --------------------------------------------------------------------------- failures


class BrokenDatabase:
    def transaction(self) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is down"))


def test_database_failure_is_503_so_sdks_retry(app: FastAPI, client: TestClient) -> None:
    app.state.ingestor.db = BrokenDatabase()
    response = client.post("/v1/track", content=body(track()), headers=AUTH)
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"


def test_a_failing_on_ingest_does_not_fail_the_request(app: FastAPI, db: Database) -> None:
    def explode(partitions: object) -> None:
        raise RuntimeError("broker down")

    app.state.ingestor.on_ingest = explode
    with TestClient(app) as client:
        response = client.post("/v1/track", content=body(track()), headers=AUTH)
    assert response.status_code == 200
    assert len(events(db)) == 1


def test_unknown_paths_answer_json_with_code_and_message(client: TestClient) -> None:
    response = client.post("/v1/purchase", content=b"{}", headers=AUTH)
    assert response.status_code == 404
    assert {"code", "message"} <= set(response.json())
    assert client.get("/v1/track").status_code == 405


def test_logs_hold_ids_and_counts_but_no_personal_data(
    client: TestClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    identify = {
        "type": "identify",
        "userId": "u42",
        "messageId": "pii-1",
        "traits": {"email": "secret.person@example.com", "phone": "+8613800000000"},
    }
    bad = {**identify, "messageId": "pii-2", "traits": "+8613911111111"}
    payload = {"batch": [identify, bad], "writeKey": WRITE_KEY}
    response = client.post("/v1/batch", content=body(payload))
    assert response.status_code == 400
    client.post("/v1/track", content=body(track()), headers=basic("wrong-key"))
    text = caplog.text
    assert "pii-2" in text  # ids are logged
    for secret in ("secret.person", "8613800000000", "8613911111111", WRITE_KEY, "wrong-key"):
        assert secret not in text
