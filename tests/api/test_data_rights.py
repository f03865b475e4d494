"""The admin API's data-rights routes: export, erase, set consent (behind the admin token)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.schema import ConsentChange, Profile
from tests.api.support import ADMIN

ROOT = Path(__file__).resolve().parents[2]


def li(db: Database) -> None:
    deploy(db, SourceTree.from_directory(ROOT / "journeys"))
    Ingestor(db).ingest(
        [
            {"type": "identify", "userId": "li", "messageId": "m1",
             "traits": {"email": "li@example.com", "subscriptions": {"sms": True}}},
            {"type": "track", "userId": "li", "event": "Signed Up", "messageId": "m2"},
        ]
    )  # fmt: skip
    apply_until_idle(LiveEngine(db))


def test_export_then_erase_then_nothing_to_export(client: TestClient, db: Database) -> None:
    li(db)
    assert client.get("/api/users/li/export").status_code == 401
    document = client.get("/api/users/li/export", headers=ADMIN).json()
    assert document["profile"]["email"] == "li@example.com"
    assert [c["source"] for c in document["consent"]["history"]] == ["event"]
    erased = client.delete("/api/users/li", headers=ADMIN)
    assert erased.status_code == 200 and erased.json()["forgotten"] is True
    assert "li@example.com" not in erased.text
    assert client.get("/api/users/li/export", headers=ADMIN).status_code == 404
    again = client.delete("/api/users/li", headers=ADMIN)
    assert again.status_code == 200 and again.json()["forgotten"] is False


def test_consent_set_by_the_admin_api_is_recorded(client: TestClient, db: Database) -> None:
    li(db)
    body = {"channel": "sms", "subscribed": False}
    reply = client.put("/api/users/li/consent", json=body, headers=ADMIN)
    assert reply.json() == {"channel": "sms", "subscribed": False, "previous": True,
                            "changed": True}  # fmt: skip
    same = client.put("/api/users/li/consent", json=body, headers=ADMIN)
    assert same.json()["changed"] is False
    bad = client.put("/api/users/li/consent", json={"channel": "sms"}, headers=ADMIN)
    assert bad.status_code == 422 and "subscribed" in bad.text
    with db.sessions() as session:
        sources = list(session.scalars(select(ConsentChange.source).order_by(ConsentChange.id)))
        profile = session.get(Profile, "user:li")
    assert sources == ["event", "admin"]
    assert profile is not None and profile.traits["subscriptions"]["sms"] is False
