"""`journey run` as a user runs it: a real process, real SDKs, kill -9 and restart."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import segment.analytics as segment_analytics
from sqlalchemy import func, select

from engine.store.database import Database
from engine.store.schema import DeadLetter, Message, StoredEvent, Timer
from tests.live.processes import WRITE_KEY, EngineProcess, wait_for

JOURNEY = """
id: quick
name: Quick follow-up
trigger: {event: Started}
exit_when: [{event: Stopped}]
start: hello
steps:
  hello:
    send: {channel: sms, content: {text: "【Acme】hello {{ user_id }} 回T退订"}}
    next: pause
  pause: {wait: 2s, next: again}
  again:
    send: {channel: sms, content: {text: "【Acme】again {{ user_id }} 回T退订"}}
    next: end
"""


@pytest.fixture
def engine(tmp_path: Path, database_url: str) -> Iterator[EngineProcess]:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "quick.yaml").write_text(textwrap.dedent(JOURNEY))
    running = EngineProcess(tmp_path, database_url)
    running.start()
    yield running
    running.stop()


def sent(engine: EngineProcess, user_id: str) -> list[dict[str, Any]]:
    return [m for m in engine.user(user_id).get("messages", []) if m["status"] == "sent"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_segment_sdk_events_reach_the_engine_and_timers_fire_on_time(
    engine: EngineProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[Exception] = []
    monkeypatch.setattr(segment_analytics, "write_key", WRITE_KEY)
    monkeypatch.setattr(segment_analytics, "host", engine.url)
    monkeypatch.setattr(segment_analytics, "sync_mode", True)
    monkeypatch.setattr(segment_analytics, "on_error", lambda e, batch: errors.append(e))
    monkeypatch.setattr(segment_analytics, "default_client", None)
    segment_analytics.identify("u1", {"phone": "+8613800000001", "locale": "zh-CN"})
    segment_analytics.track("u1", "Started", {"source": "sdk"})
    segment_analytics.flush()
    assert errors == []
    messages = wait_for(lambda: len(sent(engine, "u1")) == 2 and sent(engine, "u1"))
    assert messages, engine.user("u1")
    newest, first = messages
    assert first["content"] == {"text": "【Acme】hello u1 回T退订"}
    assert newest["content"] == {"text": "【Acme】again u1 回T退订"}
    (run,) = engine.user("u1")["runs"]
    due = at(run["entered_at"]) + timedelta(seconds=2)
    assert timedelta(0) <= at(newest["at"]) - due <= timedelta(seconds=1)


def test_bad_input_is_answered_and_good_input_kept(engine: EngineProcess) -> None:
    batch = {
        "batch": [
            {"type": "identify", "userId": "u2", "traits": {"phone": "+86138"}, "messageId": "b1"},
            {"type": "track", "userId": "u2", "messageId": "b2"},
            {"type": "track", "userId": "u2", "event": "Started", "messageId": "b3"},
        ]
    }
    reply = httpx.post(f"{engine.url}/v1/batch", json=batch, auth=(WRITE_KEY, ""))
    assert reply.status_code == 400
    assert [(r["index"], r["field"]) for r in reply.json()["rejected"]] == [(1, "event")]
    assert httpx.post(f"{engine.url}/v1/track", json={}, auth=("nope", "")).status_code == 401
    assert wait_for(lambda: len(sent(engine, "u2")) == 2)


def test_kill_and_restart_loses_nothing_and_sends_nothing_twice(engine: EngineProcess) -> None:
    users = [f"k{i}" for i in range(40)]
    batch = [
        {
            "type": "identify",
            "userId": u,
            "traits": {"phone": f"+86138{i:05d}"},
            "messageId": f"id-{u}",
        }
        for i, u in enumerate(users)
    ]
    batch += [
        {"type": "track", "userId": u, "event": "Started", "messageId": f"go-{u}"} for u in users
    ]
    reply = httpx.post(f"{engine.url}/v1/batch", json={"batch": batch}, auth=(WRITE_KEY, ""))
    assert reply.status_code == 200 and reply.json()["stored"] == 80
    engine.kill()  # mid-run: the events are durable, some may not be applied yet
    time.sleep(3)  # every 2 s wait comes due while the engine is down
    restarted = datetime.now().astimezone()
    engine.start()
    db = Database(engine.database_url, migrate=False)
    try:

        def done() -> bool:
            with db.transaction() as session:
                count = session.scalar(
                    select(func.count()).select_from(Message).where(Message.status == "sent")
                )
            return count == 2 * len(users)

        assert wait_for(done, timeout=40), engine.log.read_text()[-2000:]
        time.sleep(0.5)  # anything sent twice would show up now
        with db.transaction() as session:
            statuses = set(session.scalars(select(StoredEvent.status)))
            rows = session.execute(
                select(Message.user_key, Message.step, Message.status, Message.send_at)
            ).all()
            assert statuses == {"processed"}
            assert session.scalar(select(func.count()).select_from(Timer)) == 0
            assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
        per_user: dict[str, list[str]] = {}
        for key, step, status, _ in rows:
            per_user.setdefault(key, []).append(f"{step}:{status}")
        assert {k: sorted(v) for k, v in per_user.items()} == {
            f"user:{u}": ["again:sent", "hello:sent"] for u in users
        }
        # The second messages were all due while the engine was down: fired after restart.
        assert all(
            send_at >= restarted - timedelta(seconds=1)
            for _, step, _, send_at in rows
            if step == "again"
        )
    finally:
        db.dispose()


def test_made_up_credentials_survive_a_restart(tmp_path: Path) -> None:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "quick.yaml").write_text(textwrap.dedent(JOURNEY))
    running = EngineProcess(tmp_path, f"sqlite:///{tmp_path}/engine.db", keys=False)
    printed = []
    try:
        for _ in range(2):
            running.start()
            running.stop()
            lines = [line for line in running.log.read_text().splitlines() if "write key" in line]
            printed.append(lines[-1].split()[2])
    finally:
        running.stop()
    assert printed[0] == printed[1] and len(printed[0]) >= 20
    credentials = tmp_path / ".data" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    reply = httpx.post  # the key works: checked against a third start
    running.start()
    try:
        batch = {"batch": [{"type": "track", "userId": "u1", "event": "Started"}]}
        assert (
            reply(f"{running.url}/v1/batch", json=batch, auth=(printed[0], "")).status_code == 200
        )
    finally:
        running.stop()
