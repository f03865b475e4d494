"""Journey reports, graphs, timelines, ops figures, dead letters, the audit log and the
dashboard's sign-in, through the admin API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from engine.api import create_app, sessions
from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree
from engine.settings import Settings
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.schema import DeadLetter, StoredEvent
from tests.api.support import AUTH, SECRET_KEY, WRITE_KEY

ROOT = Path(__file__).resolve().parents[2]
ALICE = {"Authorization": "Bearer alice-token-123"}
ADMIN = {"Authorization": "Bearer plain-admin-token"}


@pytest.fixture
def named(db: Database) -> Iterator[TestClient]:
    settings = Settings(
        write_keys=[WRITE_KEY],
        admin_token="plain-admin-token",
        admin_tokens="alice:alice-token-123,ops:ops-token-456",
        secret_key=SECRET_KEY,
    )
    deploy(db, SourceTree.from_directory(ROOT / "journeys"), actor="tester")
    with TestClient(create_app(db, settings)) as client:
        yield client


def send(client: TestClient, db: Database, *messages: dict[str, Any]) -> None:
    reply = client.post("/v1/batch", json={"batch": list(messages)}, headers=AUTH)
    assert reply.status_code == 200, reply.text
    apply_until_idle(LiveEngine(db))


def signed_up(user: str) -> list[dict[str, Any]]:
    return [
        {"type": "identify", "userId": user, "messageId": f"i-{user}",
         "traits": {"email": f"{user}@example.com", "locale": "zh-CN"}},
        {"type": "track", "userId": user, "event": "Signed Up", "messageId": f"s-{user}"},
    ]  # fmt: skip


def test_reports_graphs_and_timelines(named: TestClient, db: Database) -> None:
    send(named, db, *signed_up("u1"), *signed_up("u2"))
    send(
        named, db, {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "o1"}
    )
    summary = named.get("/api/stats", headers=ALICE).json()
    welcome = next(j for j in summary["journeys"] if j["journey"] == "welcome_series")
    assert (welcome["entered"], welcome["converted"], welcome["sent"]) == (2, 1, 2)
    report = named.get("/api/journeys/welcome_series/stats", headers=ALICE).json()
    assert report["steps"][0]["name"] == "welcome_email"
    assert report["steps"][0]["messages"]["sent"] == 2
    assert report["conversions"]["converted"] == 1 and report["conversions"]["rate"] == 0.5
    assert report["attribution"]["channels"] == [
        {"channel": "email", "first_touch": 1, "last_touch": 1, "linear": 1.0}
    ]
    recounted = named.get("/api/journeys/welcome_series/stats?recount=true", headers=ALICE)
    assert {**recounted.json(), "at": None} == {**report, "at": None}
    every = named.get("/api/journeys/welcome_series/stats?version=all", headers=ALICE).json()
    assert every["version"] is None and every["entered"] == 2
    graph = named.get("/api/journeys/post_purchase_cross_sell/graph", headers=ALICE).json()
    kinds = {step["name"]: step["kind"] for step in graph["steps"]}
    assert kinds["electronics_ab"] == "split" and kinds["thank_you_email"] == "send"
    assert {"from": "electronics_ab", "to": "electronics_email_a", "label": "50%"} in graph["edges"]
    assert named.get("/api/journeys/nope/stats", headers=ALICE).status_code == 404
    assert (
        named.get("/api/journeys/welcome_series/graph?version=x", headers=ALICE).status_code == 404
    )
    timeline = named.get("/api/users/u1/timeline", headers=ALICE).json()
    kinds_seen = {item["kind"] for item in timeline["items"]}
    assert kinds_seen == {"event", "run", "message"}
    assert timeline["items"][-1]["kind"] == "event"  # oldest last: the identify
    assert named.get("/api/users/nobody/timeline", headers=ALICE).status_code == 404
    assert named.get("/api/stats").status_code == 401


def test_ops_figures_dead_letters_and_the_audit_log(named: TestClient, db: Database) -> None:
    named.post("/v1/batch", json={"batch": signed_up("u3")}, headers=AUTH)
    ops = named.get("/api/ops", headers=ADMIN).json()
    assert ops["events_pending"] == 2 and ops["queues"] is None and ops["dead_letters"] == 0
    with db.transaction() as session:  # the engine set the sign-up aside
        event = session.scalars(select(StoredEvent).where(StoredEvent.message_id == "s-u3")).one()
        event.status = "failed"
        session.add(DeadLetter(kind="event", ref=str(event.seq), error="Broken: x", payload={},
                               created_at=datetime.now(UTC)))  # fmt: skip
    listed = named.get("/api/dead-letters", headers=ALICE).json()["dead_letters"]
    assert [(d["kind"], d["error"]) for d in listed] == [("event", "Broken: x")]
    letter = listed[0]["id"]
    assert named.get("/api/ops", headers=ALICE).json()["dead_letters"] == 1
    done = named.post(f"/api/dead-letters/{letter}/replay", headers=ALICE)
    assert done.status_code == 200 and done.json()["replayed"] is True
    again = named.post(f"/api/dead-letters/{letter}/replay", headers=ALICE)
    assert again.status_code == 409 and "replayed already" in again.json()["message"]
    assert named.get("/api/dead-letters", headers=ALICE).json()["dead_letters"] == []
    assert len(named.get("/api/dead-letters?all=true", headers=ALICE).json()["dead_letters"]) == 1
    apply_until_idle(LiveEngine(db))
    report = named.get("/api/journeys/welcome_series/stats", headers=ALICE).json()
    assert report["entered"] == 1  # the replayed sign-up entered the journey
    gone = named.delete(
        f"/api/dead-letters/{letter}", headers={"Authorization": "Bearer ops-token-456"}
    )
    assert gone.status_code == 200
    assert named.delete(f"/api/dead-letters/{letter}", headers=ALICE).status_code == 404
    entries = named.get("/api/audit", headers=ADMIN).json()["entries"]
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("discard", "ops"),
        ("replay", "alice"),
        ("deploy", "tester"),
    ]
    assert named.get("/api/audit?action=deploy", headers=ADMIN).json()["entries"][0]["detail"][
        "journeys"
    ]["welcome_series"]


def test_the_dashboard_signs_in_with_a_cookie_that_reads_but_needs_a_header_to_act(
    named: TestClient,
) -> None:
    page = named.get("/dashboard", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert page.status_code == 200 and 'lang="zh-CN"' in page.text and "管理令牌" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    english = named.get("/dashboard", headers={"Accept-Language": "en-US,en;q=0.9,zh;q=0.5"})
    assert 'lang="en"' in english.text
    wrong = named.post("/dashboard/login", data={"token": "nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and sessions.COOKIE not in wrong.cookies
    right = named.post(
        "/dashboard/login", data={"token": "alice-token-123"}, follow_redirects=False
    )
    assert right.status_code == 303
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "alice-token-123" not in cookie
    app_page = named.get("/dashboard")
    assert 'id="view"' in app_page.text and "alice" in app_page.text
    assert named.get("/api/stats").status_code == 200  # the cookie reads
    assert named.post("/api/dead-letters/replay").status_code == 401  # but cannot act alone
    acting = named.post(
        "/api/dead-letters/replay", headers={"X-Requested-With": "journey-dashboard"}
    )
    assert acting.status_code == 200 and acting.json()["replayed"] == 0
    out = named.post("/dashboard/logout", follow_redirects=False)
    assert out.status_code == 303
    named.cookies.clear()
    assert named.get("/api/stats").status_code == 401
    assert 'name="token"' in named.get("/dashboard").text


def test_cookies_are_forged_by_no_one_and_expire() -> None:
    tokens = {"alice": "alice-token-123"}
    now = time.time()
    value = sessions.issue("alice", tokens["alice"], now)
    assert sessions.verify(value, tokens, now) == "alice"
    assert sessions.verify(value, tokens, now + sessions.LIFETIME + 1) is None
    assert sessions.verify(value, {"alice": "rotated-token"}, now) is None
    name, expires, signature = value.split("|")
    assert sessions.verify(f"{name}|{int(expires) + 3600}|{signature}", tokens, now) is None
    bob = sessions.issue("bob", "bobs-token", now)
    assert sessions.verify(bob, tokens, now) is None
    assert sessions.verify("garbage", tokens, now) is None
    assert sessions.verify("a|b|c", tokens, now) is None


def test_named_admin_tokens_are_checked_and_their_errors_never_show_a_token() -> None:
    settings = Settings(admin_token="plain", admin_tokens="alice:t1, ops:t2")
    assert settings.named_admin_tokens() == {"alice": "t1", "ops": "t2", "admin": "plain"}
    for bad, says in (
        ("alice", "write name:token"),
        ("al ice:secret-value", "a name is letters"),
        ("a:secret-value,a:other-secret", "named twice"),
        ("a:secret-value,b:secret-value", "share one token"),
    ):
        with pytest.raises(ValueError) as caught:
            Settings(admin_tokens=bad)
        assert says in str(caught.value) and "secret-value" not in str(caught.value)
