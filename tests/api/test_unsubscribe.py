"""/unsubscribe/{token}: signed links, a confirmation page (GET), the act (POST and RFC 8058
one-click), recorded as a consent change, answered with what happened."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from engine.api import create_app
from engine.live.engine import LiveEngine
from engine.messages import unsubscribe_url
from engine.project import SourceTree
from engine.settings import Settings
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.schema import ConsentChange, Identity, Message, Profile
from tests.api.support import ADMIN, SECRET_KEY, WRITE_KEY, events

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def link(user_key: str, channel: str, message_id: str = "msg-1", key: str = SECRET_KEY) -> str:
    """The path of a message's unsubscribe link, as the renderer makes it."""
    url = unsubscribe_url(
        "http://127.0.0.1:8000", message_id, user_key=user_key, channel=channel, secret_key=key
    )
    return url.removeprefix("http://127.0.0.1:8000")


def add_profile(db: Database, key: str, **traits: Any) -> None:
    with db.transaction() as session:
        session.add(Profile(user_key=key, traits=traits, created_at=T0, updated_at=T0))


def traits(db: Database, key: str) -> dict[str, Any]:
    with db.transaction() as session:
        profile = session.get(Profile, key)
        return dict(profile.traits) if profile else {}


def changes(db: Database) -> list[ConsentChange]:
    with db.transaction() as session:
        return list(session.scalars(select(ConsentChange).order_by(ConsentChange.id)))


SUBSCRIBED = {"email": "li@example.com", "subscriptions": {"email": True, "sms": True}}


# --------------------------------------------------------------------------- the page


def test_get_asks_to_confirm_and_changes_nothing(client: TestClient, db: Database) -> None:
    add_profile(db, "user:u42", **SUBSCRIBED)
    response = client.get(link("user:u42", "email"))  # no credentials: a link in an email
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "Unsubscribe?" in response.text
    assert '<form method="post">' in response.text
    assert traits(db, "user:u42")["subscriptions"]["email"] is True  # scanners change nothing
    assert changes(db) == []


def test_the_page_speaks_the_profile_language(client: TestClient, db: Database) -> None:
    add_profile(db, "user:li", locale="zh-CN", **SUBSCRIBED)
    page = client.get(link("user:li", "email"), headers={"Accept-Language": "en"}).text
    assert "确认退订" in page and "邮件" in page
    assert "Unsubscribe" not in page
    done = client.post(link("user:li", "email")).text
    assert "您已退订" in done


def test_without_a_locale_the_browser_language_decides(client: TestClient, db: Database) -> None:
    add_profile(db, "user:u1", **SUBSCRIBED)
    chinese = client.get(link("user:u1", "sms"), headers={"Accept-Language": "zh-CN,en;q=0.8"})
    assert "短信" in chinese.text
    english = client.get(link("user:u1", "sms"), headers={"Accept-Language": "fr,en;q=0.5"})
    assert "text messages" in english.text


# --------------------------------------------------------------------------- acting


def test_post_unsubscribes_and_records_the_change(client: TestClient, db: Database) -> None:
    add_profile(db, "user:u42", **SUBSCRIBED)
    response = client.post(link("user:u42", "email", "msg-7"))
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert traits(db, "user:u42")["subscriptions"] == {"email": False, "sms": True}
    [change] = changes(db)
    assert (change.user_key, change.channel, change.subscribed, change.previous) == (
        "user:u42",
        "email",
        False,
        True,
    )
    assert (change.source, change.message_id) == ("unsubscribe_page", "msg-7")
    assert change.changed_at is not None
    assert events(db) == []  # a fact of its own, not a synthetic identify


def test_a_second_click_says_already_unsubscribed(client: TestClient, db: Database) -> None:
    add_profile(db, "user:u42", **SUBSCRIBED)
    client.post(link("user:u42", "email"))
    again = client.post(link("user:u42", "email"))
    assert again.status_code == 200
    assert "You are already unsubscribed" in again.text
    assert len(changes(db)) == 1
    page = client.get(link("user:u42", "email"))
    assert "already unsubscribed" in page.text and "<form" not in page.text


def test_a_resubscribed_user_is_unsubscribed_again_by_the_old_link(
    client: TestClient, db: Database
) -> None:
    add_profile(db, "user:u42", **SUBSCRIBED)
    client.post(link("user:u42", "email"))
    with db.transaction() as session:  # what an identify with subscriptions.email=true does
        profile = session.get(Profile, "user:u42")
        assert profile is not None
        profile.traits = {**profile.traits, "subscriptions": {"email": True}}
    response = client.post(link("user:u42", "email"))
    assert "You are unsubscribed" in response.text
    assert traits(db, "user:u42")["subscriptions"]["email"] is False
    assert [c.previous for c in changes(db)] == [True, True]


def test_a_message_id_sent_first_cannot_preempt_the_link(client: TestClient, db: Database) -> None:
    add_profile(db, "user:u42", **SUBSCRIBED)
    forged = {"type": "identify", "userId": "u42", "messageId": "unsubscribe-msg-1"}
    assert Ingestor(db).ingest([forged]).stored == 1
    response = client.post(link("user:u42", "email", "msg-1"))
    assert "You are unsubscribed" in response.text
    assert traits(db, "user:u42")["subscriptions"]["email"] is False


def test_rfc_8058_one_click_post(client: TestClient, db: Database) -> None:
    add_profile(db, "user:u7", **SUBSCRIBED)
    response = client.post(
        link("user:u7", "email"), content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert response.status_code == 200
    [change] = changes(db)
    assert change.source == "one_click"
    assert traits(db, "user:u7")["subscriptions"]["email"] is False


def test_an_anonymous_user_without_a_profile(client: TestClient, db: Database) -> None:
    response = client.post(link("anon:a-9", "push"))
    assert "You are unsubscribed" in response.text
    assert traits(db, "anon:a-9") == {"subscriptions": {"push": False}}
    [change] = changes(db)
    assert change.previous is None


def test_a_merged_user_is_unsubscribed_where_the_profile_lives_now(
    client: TestClient, db: Database
) -> None:
    add_profile(db, "user:u42", **SUBSCRIBED)
    with db.transaction() as session:
        session.add(Identity(alias_key="anon:a-1", owner_key="user:u42", linked_at=T0))
    client.post(link("anon:a-1", "email"))  # the message went out before the merge
    assert traits(db, "user:u42")["subscriptions"]["email"] is False
    history = client.get("/api/users/u42", headers=ADMIN).json()["consent"]
    assert [(c["channel"], c["subscribed"], c["previous"], c["source"]) for c in history] == [
        ("email", False, True, "unsubscribe_page")
    ]


# --------------------------------------------------------------------------- forgery


def tampered(path: str, **change: str) -> str:
    """``path`` with its payload rewritten and the old signature kept."""
    payload, signature = path.removeprefix("/unsubscribe/").split(".")
    fields = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields[1] = change.get("user", fields[1])
    fields[2] = change.get("channel", fields[2])
    forged = base64.urlsafe_b64encode(orjson.dumps(fields)).rstrip(b"=").decode()
    return f"/unsubscribe/{forged}.{signature}"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: "/unsubscribe/msg-1", id="unsigned message id"),
        pytest.param(lambda: link("user:victim", "email").split(".")[0], id="no signature"),
        pytest.param(lambda: link("user:victim", "email")[:-3], id="truncated signature"),
        pytest.param(lambda: tampered(link("user:me", "email"), user="user:victim"), id="user"),
        pytest.param(lambda: tampered(link("user:victim", "sms"), channel="email"), id="channel"),
        pytest.param(lambda: link("user:victim", "email", key="another-key-0123456789"), id="key"),
        pytest.param(lambda: "/unsubscribe/%C3%A9." + "A" * 43, id="not ascii"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_links_not_signed_with_the_key_are_refused(
    forge: Any, method: str, client: TestClient, db: Database
) -> None:
    add_profile(db, "user:victim", **SUBSCRIBED)
    response = client.request(method, forge())
    assert response.status_code == 404
    assert "This link is not valid" in response.text
    assert traits(db, "user:victim")["subscriptions"]["email"] is True
    assert changes(db) == []


def test_without_a_secret_key_every_link_is_refused(db: Database) -> None:
    add_profile(db, "user:u42", **SUBSCRIBED)
    app = create_app(db, Settings(write_keys=[WRITE_KEY]))
    with TestClient(app) as client:
        assert client.post(link("user:u42", "email")).status_code == 404
    assert traits(db, "user:u42")["subscriptions"]["email"] is True


# --------------------------------------------------------------------------- end to end


def test_the_link_the_dispatcher_renders_unsubscribes_its_user(
    client: TestClient, db: Database
) -> None:
    """The welcome email's link, made by the live engine with the server's key, works."""
    deploy(db, SourceTree.from_directory(ROOT / "journeys"), now=T0)
    live = LiveEngine(db, clock=lambda: T0, secret_key=SECRET_KEY)
    Ingestor(db).ingest(
        [
            {"type": "identify", "userId": "u5", "traits": SUBSCRIBED, "messageId": "i5"},
            {"type": "track", "userId": "u5", "event": "Signed Up", "messageId": "t5"},
        ],
        now=T0,
    )
    live.apply()
    live.dispatch()
    with db.transaction() as session:
        welcome = session.scalars(select(Message).where(Message.channel == "email")).one()
        assert welcome.status == "sent" and welcome.content is not None
        html = welcome.content["html"]
    found = re.search(r'href="http://127\.0\.0\.1:8000(/unsubscribe/[^"]+)"', html)
    assert found is not None, html
    assert "li@example.com" not in found.group(1)  # the link names no address
    assert client.post(found.group(1)).status_code == 200
    assert traits(db, "user:u5")["subscriptions"]["email"] is False
    *opted_in, change = changes(db)  # the identify's opt-ins, then the link's opt-out
    assert {(c.channel, c.source, c.message_id, c.subscribed) for c in opted_in} == {
        ("email", "event", "i5", True),
        ("sms", "event", "i5", True),
    }
    assert change.message_id == welcome.message_id
