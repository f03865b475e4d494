"""Prometheus metrics on the API: counters of this process, gauges read from the database."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from engine.store.database import Database
from engine.store.schema import DeadLetter, Timer
from tests.api.support import ADMIN, AUTH, body, track


def sample(text: str, name: str, labels: str = "") -> float:
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "")
    found = re.search(pattern + r" (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_events_and_read_the_database(client: TestClient, db: Database) -> None:
    assert client.get("/metrics").status_code == 401
    before = client.get("/metrics", headers=ADMIN).text
    client.post("/v1/track", content=body(track("a")), headers=AUTH)
    client.post("/v1/track", content=body(track("a")), headers=AUTH)  # the same messageId
    client.post("/v1/track", content=body({"type": "track", "userId": "u"}), headers=AUTH)
    now = datetime.now(UTC)
    with db.transaction() as session:
        session.add(Timer(timer_id="t1", seq=1, run_id="r1", user_key="user:u", partition=1,
                          due_at=now - timedelta(seconds=30)))  # fmt: skip
        session.add(DeadLetter(kind="event", ref="1", error="x", created_at=now))
    time.sleep(1.05)  # the database is read at most once a second
    after = client.get("/metrics", headers=ADMIN)
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text
    for outcome, grew in (("accepted", 1), ("duplicate", 1), ("rejected", 1)):
        name, labels = "journey_events_total", f'outcome="{outcome}"'
        assert sample(text, name, labels) - sample(before, name, labels) == grew
    assert 29 <= sample(text, "journey_timer_lag_seconds") < 120
    assert sample(text, "journey_dead_letters") == 1
    assert "journey_outbox_backlog 0.0" in text
