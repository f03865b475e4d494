"""The admin API and /healthz, on rows written straight into the tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.api import create_app
from engine.settings import Settings
from engine.store.database import Database
from engine.store.schema import Deployment, Identity, JourneyVersion, Message, Profile, Run
from tests.api.support import ADMIN, ADMIN_TOKEN, AUTH, basic

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def profile(key: str, traits: dict[str, Any]) -> Profile:
    return Profile(user_key=key, traits=traits, created_at=T0, updated_at=T0)


def run(run_id: str, key: str, journey: str, entered: float, **extra: Any) -> Run:
    values: dict[str, Any] = {
        "version": "v1",
        "status": "active",
        "step": "wait",
        "ended_at": None,
        "converted_at": None,
        "goal_until": None,
        "state": {},
        "updated_at": at(entered),
    }
    values.update(extra)
    return Run(run_id=run_id, user_key=key, journey_id=journey, entered_at=at(entered), **values)


def message(message_id: str, key: str, send: float, **extra: Any) -> Message:
    values: dict[str, Any] = {
        "run_id": "r1",
        "journey_id": "welcome",
        "step": "hello",
        "channel": "sms",
        "status": "sent",
        "reason": None,
        "content": {"text": "Hi"},
        "created_at": at(send),
        "updated_at": at(send),
    }
    values.update(extra)
    return Message(message_id=message_id, user_key=key, send_at=at(send), **values)


def link(alias: str, owner: str) -> Identity:
    return Identity(alias_key=alias, owner_key=owner, linked_at=T0)


@pytest.fixture
def people(db: Database) -> None:
    with db.transaction() as session:
        session.add_all(
            [
                profile("user:u42", {"email": "u@example.com", "subscriptions": {"sms": True}}),
                link("anon:a-9", "user:u42"),
                run("r1", "user:u42", "welcome", 0, status="completed", step=None,
                    ended_at=at(5), converted_at=at(4)),
                run("r2", "user:u42", "winback", 24),
                message("m1", "user:u42", 1),
                message("m2", "user:u42", 2, channel="email", status="suppressed",
                        reason="quiet_hours", content=None),
                message("m3", "user:u42", 0.5, status="failed", reason="provider_error"),
                # someone else, and an anonymous visitor of their own
                profile("user:other", {"name": "Other"}),
                message("m4", "user:other", 3),
                profile("anon:visitor", {"locale": "zh-CN"}),
                # a chain: anon:z -> user:old -> user:new
                link("anon:z", "user:old"),
                link("user:old", "user:new"),
                run("r9", "user:new", "welcome", 1),
                # "both" is a user id and, separately, an anonymous id
                profile("user:both", {"as": "user"}),
                profile("anon:both", {"as": "anon"}),
            ]
        )  # fmt: skip


def test_healthz_needs_no_auth(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


@pytest.mark.parametrize("path", ["/api/users/u42", "/api/journeys"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": ADMIN_TOKEN},
        basic(ADMIN_TOKEN),
        AUTH,  # a write key is not an admin token
    ],
)
def test_admin_needs_the_bearer_token(
    path: str, headers: dict[str, str], client: TestClient, people: None
) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == "unauthorized"


def test_no_admin_token_configured_refuses_everyone(db: Database) -> None:
    app = create_app(db, Settings(write_keys=["k"], admin_token=None))
    with TestClient(app) as client:
        assert client.get("/api/journeys", headers={"Authorization": "Bearer "}).status_code == 401
        assert client.get("/api/journeys", headers=ADMIN).status_code == 401


def test_user(client: TestClient, people: None) -> None:
    response = client.get("/api/users/u42", headers=ADMIN)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["user_id"] == "u42"
    assert data["key"] == "user:u42"
    assert data["profile"] == {"email": "u@example.com", "subscriptions": {"sms": True}}
    assert data["runs"] == [
        {
            "run_id": "r2",
            "journey": "winback",
            "version": "v1",
            "status": "active",
            "step": "wait",
            "entered_at": "2026-03-02T10:00:00Z",
            "ended_at": None,
            "converted_at": None,
        },
        {
            "run_id": "r1",
            "journey": "welcome",
            "version": "v1",
            "status": "completed",
            "step": None,
            "entered_at": "2026-03-01T10:00:00Z",
            "ended_at": "2026-03-01T15:00:00Z",
            "converted_at": "2026-03-01T14:00:00Z",
        },
    ]
    assert [m["message_id"] for m in data["messages"]] == ["m2", "m1", "m3"]
    assert data["messages"][0] == {
        "message_id": "m2",
        "journey": "welcome",
        "step": "hello",
        "channel": "email",
        "status": "suppressed",
        "reason": "quiet_hours",
        "at": "2026-03-01T12:00:00Z",
        "content": None,
    }
    assert data["messages"][1]["content"] == {"text": "Hi"}
    assert data["messages"][2]["at"] == "2026-03-01T10:30:00Z"


def test_an_anonymous_id_resolves_to_its_owner(client: TestClient, people: None) -> None:
    data = client.get("/api/users/a-9", headers=ADMIN).json()
    assert (data["user_id"], data["key"]) == ("u42", "user:u42")
    assert len(data["runs"]) == 2


def test_an_anonymous_visitor(client: TestClient, people: None) -> None:
    response = client.get("/api/users/visitor", headers=ADMIN)
    assert response.status_code == 200
    data = response.json()
    assert (data["user_id"], data["key"]) == ("visitor", "anon:visitor")
    assert data["profile"] == {"locale": "zh-CN"}
    assert (data["runs"], data["messages"]) == ([], [])


def test_links_are_followed_to_the_end(client: TestClient, people: None) -> None:
    for user_id in ("z", "old", "new"):
        data = client.get(f"/api/users/{user_id}", headers=ADMIN).json()
        assert data["key"] == "user:new"
        assert data["profile"] == {}  # runs only, no profile yet
        assert [r["run_id"] for r in data["runs"]] == ["r9"]


def test_the_user_id_wins_over_an_equal_anonymous_id(client: TestClient, people: None) -> None:
    assert client.get("/api/users/both", headers=ADMIN).json()["profile"] == {"as": "user"}


def test_a_user_with_messages_only_is_found(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        session.add(message("lonely", "user:msgs-only", 0))
    data = client.get("/api/users/msgs-only", headers=ADMIN).json()
    assert [m["message_id"] for m in data["messages"]] == ["lonely"]


def test_unknown_user_is_404(client: TestClient, people: None) -> None:
    response = client.get("/api/users/nobody", headers=ADMIN)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    # a link alone, with nothing behind it, is not a user either
    assert client.get("/api/users/old-link-only", headers=ADMIN).status_code == 404


def test_ids_with_odd_characters(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        session.add(profile("user:ü/ser 1@x", {"ok": True}))
    response = client.get("/api/users/%C3%BC%2Fser%201%40x", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["user_id"] == "ü/ser 1@x"
    assert client.get("/api/users/%C3%BCser", headers=ADMIN).status_code == 404


def test_limit(client: TestClient, people: None) -> None:
    data = client.get("/api/users/u42?limit=1", headers=ADMIN).json()
    assert ([r["run_id"] for r in data["runs"]], [m["message_id"] for m in data["messages"]]) == (
        ["r2"],
        ["m2"],
    )
    bad = client.get("/api/users/u42?limit=0", headers=ADMIN)
    assert bad.status_code == 422
    assert {"code", "message"} <= set(bad.json())


def test_journeys_without_a_deployment(client: TestClient) -> None:
    response = client.get("/api/journeys", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {"deployment": None, "journeys": []}


def test_journeys_of_the_latest_deployment(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        old = Deployment(
            version="d-old", files={}, journeys={"welcome": "w1", "retired": "x1"}, created_at=T0
        )
        new = Deployment(
            version="d-new",
            files={},
            journeys={"welcome": "w2", "winback": "b1"},
            created_at=at(48.25),
        )
        session.add_all([old, new])
        session.flush()
        session.add_all(
            [
                JourneyVersion(journey_id="welcome", version="w1", deployment_id=old.id,
                               name="Welcome", created_at=T0),
                JourneyVersion(journey_id="retired", version="x1", deployment_id=old.id,
                               name="Retired", created_at=T0),
                JourneyVersion(journey_id="welcome", version="w2", deployment_id=new.id,
                               name="Welcome v2", created_at=at(48)),
                JourneyVersion(journey_id="winback", version="b1", deployment_id=new.id,
                               name="Win back", created_at=at(48)),
                run("a", "user:1", "welcome", 1, version="w1"),  # pinned to the old version
                run("b", "user:2", "welcome", 50, version="w2"),
                run("c", "user:3", "welcome", 2, version="w1", status="completed"),
                run("d", "user:4", "retired", 3, version="x1"),
            ]
        )  # fmt: skip
        new_id = new.id
    response = client.get("/api/journeys", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {
        "deployment": {"id": new_id, "version": "d-new", "deployed_at": "2026-03-03T10:15:00Z"},
        "journeys": [
            {
                "id": "welcome",
                "name": "Welcome v2",
                "version": "w2",
                "deployed_at": "2026-03-03T10:15:00Z",
                "active_runs": 2,
                "status": "running",
            },
            {
                "id": "winback",
                "name": "Win back",
                "version": "b1",
                "deployed_at": "2026-03-03T10:15:00Z",
                "active_runs": 0,
                "status": "running",
            },
        ],
    }
