"""The real SDKs against the real server: segment-analytics-python and rudder-sdk-python.

uvicorn serves the app on a free 127.0.0.1 port in a background thread; the SDKs send
exactly as they would to Segment or RudderStack (``POST /v1/batch``, Basic auth with the
write key, gzip for RudderStack by default), and the rows land in the events table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
import rudderstack.analytics as rudder_analytics  # type: ignore[import-untyped]
import segment.analytics as segment_analytics  # type: ignore[import-untyped]
from fastapi import FastAPI
from rudderstack.analytics.client import Client as RudderClient  # type: ignore[import-untyped]
from rudderstack.analytics.request import APIError as RudderAPIError  # type: ignore[import-untyped]
from segment.analytics.client import Client as SegmentClient  # type: ignore[import-untyped]
from segment.analytics.request import APIError as SegmentAPIError  # type: ignore[import-untyped]

from engine.events import parse_message
from engine.store.database import Database
from tests.api.conftest import Wakes
from tests.api.support import WRITE_KEY, events, serve

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Recorder:
    """ASGI middleware keeping the method, path and headers of every request."""

    app: Any
    requests: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            self.requests.append(Seen(scope["method"], scope["path"], headers))
        await self.app(scope, receive, send)


@dataclass
class Server:
    url: str
    recorder: Recorder


@pytest.fixture
def server(app: FastAPI) -> Iterator[Server]:
    recorder = Recorder(app)
    with serve(recorder) as url:
        yield Server(url, recorder)


def send_everything(sdk: Any, prefix: str) -> None:
    """One call of each kind, through a client or the module-level API (same signatures)."""
    sdk.identify(
        "u42",
        {"email": "u@example.com", "locale": "zh-CN", "subscriptions": {"sms": True}},
        anonymous_id="a-9",
        timestamp=T0,
        message_id=f"{prefix}-identify",
    )
    sdk.track(
        "u42",
        "Order Completed",
        {"order_id": "o1", "total": 99.5},
        timestamp=T0,
        message_id=f"{prefix}-track",
    )
    sdk.page(
        anonymous_id="a-9",
        name="Pricing",
        properties={"path": "/pricing"},
        timestamp=T0,
        message_id=f"{prefix}-page",
    )
    sdk.screen("u42", name="Home", timestamp=T0, message_id=f"{prefix}-screen")
    sdk.group("u42", "g1", {"name": "ACME"}, timestamp=T0, message_id=f"{prefix}-group")
    sdk.alias("a-9", "u42", timestamp=T0, message_id=f"{prefix}-alias")
    sdk.track("u42", "No Ids Given")  # the SDK makes the messageId and timestamp


def check_rows(db: Database, prefix: str, library: str) -> None:
    rows = events(db)
    by_id = {row.message_id: row for row in rows}
    assert [row.type for row in rows] == [
        "identify",
        "track",
        "page",
        "screen",
        "group",
        "alias",
        "track",
    ]
    identify = by_id[f"{prefix}-identify"]
    assert (identify.user_id, identify.anonymous_id) == ("u42", "a-9")
    # RudderStack puts identify traits in context.traits only; the engine reads them there.
    assert parse_message(identify.payload).traits["subscriptions"] == {"sms": True}
    assert identify.timestamp == T0

    track = by_id[f"{prefix}-track"]
    assert (track.type, track.user_id) == ("track", "u42")
    assert track.payload["event"] == "Order Completed"
    assert track.payload["properties"] == {"order_id": "o1", "total": 99.5}
    assert track.timestamp == T0
    assert track.payload["context"]["library"]["name"] == library
    assert track.status == "pending"

    page = by_id[f"{prefix}-page"]
    assert (page.user_id, page.anonymous_id) == (None, "a-9")
    assert page.payload["name"] == "Pricing"
    assert page.payload["properties"] == {"path": "/pricing"}

    assert by_id[f"{prefix}-screen"].payload["name"] == "Home"
    assert by_id[f"{prefix}-group"].payload["groupId"] == "g1"

    alias = by_id[f"{prefix}-alias"]
    assert (alias.user_id, alias.payload["previousId"]) == ("u42", "a-9")

    generated = rows[-1]
    assert generated.payload["event"] == "No Ids Given"
    assert generated.message_id and generated.message_id == generated.payload["messageId"]
    assert abs((generated.timestamp - generated.received_at).total_seconds()) < 60


def check_requests(server: Server, *, gzip: bool) -> None:
    posts = [seen for seen in server.recorder.requests if seen.method == "POST"]
    assert posts
    for seen in posts:
        assert seen.path == "/v1/batch"
        assert seen.headers["authorization"].startswith("Basic ")
        assert seen.headers["content-type"] == "application/json"
        assert (seen.headers.get("content-encoding") == "gzip") is gzip


# --------------------------------------------------------------------------- Segment


def test_segment_sdk_module_level(
    server: Server, db: Database, wakes: Wakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[Any] = []
    monkeypatch.setattr(segment_analytics, "write_key", WRITE_KEY)
    monkeypatch.setattr(segment_analytics, "host", server.url)
    monkeypatch.setattr(segment_analytics, "sync_mode", True)
    monkeypatch.setattr(segment_analytics, "on_error", lambda e, batch: errors.append(e))
    monkeypatch.setattr(segment_analytics, "default_client", None)
    send_everything(segment_analytics, "seg")
    segment_analytics.flush()
    assert errors == []
    check_rows(db, "seg", "analytics-python")
    check_requests(server, gzip=False)  # the Segment SDK gzips only when asked
    assert wakes.count == 7  # sync mode: one request, one commit per call


def test_segment_sdk_gzip_batches_with_flush(server: Server, db: Database) -> None:
    errors: list[Any] = []
    client = SegmentClient(
        WRITE_KEY,
        host=server.url,
        gzip=True,
        upload_interval=0.05,
        on_error=lambda e, batch: errors.append(e),
    )
    try:
        send_everything(client, "segz")
        for i in range(30):
            client.track(f"user-{i}", "Bulk", {"i": i}, message_id=f"bulk-{i}")
        client.flush()
    finally:
        client.shutdown()
    assert errors == []
    rows = events(db)
    assert len(rows) == 37
    assert {row.message_id for row in rows} >= {f"bulk-{i}" for i in range(30)}
    check_requests(server, gzip=True)
    assert len(server.recorder.requests) < 37  # batched


def test_segment_sdk_sees_our_errors(server: Server, db: Database) -> None:
    wrong = SegmentClient("not-a-key", host=server.url, sync_mode=True)
    with pytest.raises(SegmentAPIError) as refused:
        wrong.track("u1", "Signed Up")
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")

    client = SegmentClient(WRITE_KEY, host=server.url, sync_mode=True)
    with pytest.raises(SegmentAPIError) as invalid:
        client.track("u1", "", message_id="empty-event")  # the SDK lets an empty name through
    assert (invalid.value.status, invalid.value.code) == (400, "invalid_message")
    assert "event" in invalid.value.message
    assert events(db) == []


def test_segment_sdk_duplicates(server: Server, db: Database) -> None:
    client = SegmentClient(WRITE_KEY, host=server.url, sync_mode=True)
    client.track("u1", "Signed Up", message_id="dup")
    client.track("u1", "Signed Up", message_id="dup")  # a 200, not an error
    assert [row.message_id for row in events(db)] == ["dup"]


# --------------------------------------------------------------------------- RudderStack


def test_rudder_sdk_module_level(
    server: Server, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    module: ModuleType = rudder_analytics
    errors: list[Any] = []
    monkeypatch.setattr(module, "write_key", WRITE_KEY)
    monkeypatch.setattr(module, "dataPlaneUrl", server.url)
    monkeypatch.setattr(module, "sync_mode", True)
    monkeypatch.setattr(module, "on_error", lambda e, batch: errors.append(e))
    monkeypatch.setattr(module, "default_client", None)
    send_everything(module, "rud")
    assert errors == []
    check_rows(db, "rud", "analytics-python")
    assert events(db)[0].payload["channel"] == "server"
    check_requests(server, gzip=True)  # the RudderStack SDK gzips by default


def test_rudder_sdk_batches_with_flush(server: Server, db: Database) -> None:
    errors: list[Any] = []
    client = RudderClient(
        WRITE_KEY,
        host=server.url,
        upload_interval=0.05,
        on_error=lambda e, batch: errors.append(e),
    )
    try:
        send_everything(client, "rudb")
        client.flush()
    finally:
        client.shutdown()
    assert errors == []
    check_rows(db, "rudb", "analytics-python")
    check_requests(server, gzip=True)


def test_rudder_sdk_without_gzip(server: Server, db: Database) -> None:
    client = RudderClient(WRITE_KEY, host=server.url, sync_mode=True, gzip=False)
    client.track("u1", "Signed Up", {"plan": "pro"}, message_id="plain")
    assert [row.payload["properties"] for row in events(db)] == [{"plan": "pro"}]
    check_requests(server, gzip=False)


def test_rudder_sdk_sees_our_errors(server: Server, db: Database) -> None:
    # Rudder reads payload["code"] / ["message"]: without them it would retry a 4xx.
    wrong = RudderClient("not-a-key", host=server.url, sync_mode=True)
    with pytest.raises(RudderAPIError) as refused:
        wrong.track("u1", "Signed Up")
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    client = RudderClient(WRITE_KEY, host=server.url, sync_mode=True)
    with pytest.raises(RudderAPIError) as invalid:
        client.track("u1", "")
    assert (invalid.value.status, invalid.value.code) == (400, "invalid_message")
    assert events(db) == []
