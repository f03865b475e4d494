"""Delivery reports and SMS replies from providers, each proven by its provider's signature."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from engine.api.webhooks import body_signature, twilio_signature, webhook_token
from engine.channels.senders import OutboundMessage, Receipt, SenderRegistry
from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree
from engine.settings import Settings
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.schema import AddressBlock, ConsentChange, Message, Profile
from tests.api.support import SECRET_KEY

TOKEN = "twilio-auth-token"
HELLO = """
id: hello
name: Hello
trigger: {event: Go}
entry: {re_entry: always}
start: say
steps:
  say:
    send:
      channel: sms
      fallback: [email]
      content: {sms: {text: "hi 回T退订"}, email: {subject: "hi", html: "<p>hi</p>"}}
    next: end
"""


class Provider:
    """Accepts everything, answering with ids like a provider's."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[str] = []

    def send(self, message: OutboundMessage) -> Receipt:
        self.sent.append(message.message_id)
        return Receipt(self.name, f"{self.name}-{message.message_id}")


@pytest.fixture
def settings() -> Settings:
    from tests.api.support import ADMIN_TOKEN, WRITE_KEY

    return Settings(
        write_keys=[WRITE_KEY],
        admin_token=ADMIN_TOKEN,
        secret_key=SECRET_KEY,
        public_url="https://shop.example.com",
        twilio_auth_token=TOKEN,
    )


@pytest.fixture
def live(db: Database, tmp_path: Path) -> LiveEngine:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "hello.yaml").write_text(textwrap.dedent(HELLO))
    deploy(db, SourceTree.from_directory(tmp_path / "journeys"))
    senders = SenderRegistry({"sms": Provider("twilio"), "email": Provider("smtp")})
    return LiveEngine(db, senders, secret_key=SECRET_KEY)


def send_to(db: Database, live: LiveEngine, user: str, number: int) -> None:
    traits = {"phone": f"+86138000000{user[1:].zfill(2)}", "email": f"{user}@example.com"}
    Ingestor(db).ingest(
        [
            {"type": "identify", "userId": user, "traits": traits, "messageId": f"i-{user}"},
            {"type": "track", "userId": user, "event": "Go", "messageId": f"go-{user}-{number}"},
        ]
    )
    apply_until_idle(live)


def messages(db: Database) -> list[Message]:
    with db.sessions() as session:
        return list(session.scalars(select(Message).order_by(Message.created_at)))


def twilio_post(client: TestClient, path: str, form: dict[str, str], token: str = TOKEN) -> Any:
    signature = twilio_signature(token, f"https://shop.example.com{path}", form)
    return client.post(
        path,
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


def test_twilio_reports_delivered_only_with_its_signature(
    client: TestClient, db: Database, live: LiveEngine
) -> None:
    send_to(db, live, "u1", 1)
    (sms,) = messages(db)
    form = {"MessageSid": f"twilio-{sms.message_id}", "MessageStatus": "delivered"}
    assert twilio_post(client, "/webhooks/twilio/status", form, token="wrong").status_code == 403
    assert messages(db)[0].status == "sent"
    assert twilio_post(client, "/webhooks/twilio/status", form).status_code == 204
    (sms,) = messages(db)
    assert sms.status == "delivered" and sms.reported_at is not None


def test_a_number_that_cannot_receive_sms_is_blocked_and_later_sends_fall_back(
    client: TestClient, db: Database, live: LiveEngine
) -> None:
    send_to(db, live, "u1", 1)
    (sms,) = messages(db)
    form = {
        "MessageSid": f"twilio-{sms.message_id}",
        "MessageStatus": "undelivered",
        "ErrorCode": "30006",
        "To": "+86 138 0000 0001",
    }
    assert twilio_post(client, "/webhooks/twilio/status", form).status_code == 204
    assert messages(db)[0].status == "failed"
    send_to(db, live, "u1", 2)  # the next send: the number is blocked, email is tried
    second = [m for m in messages(db) if m.message_id != sms.message_id]
    outcome = sorted((m.channel, m.status, m.reason) for m in second)
    assert outcome == [("email", "sent", None), ("sms", "suppressed", "undeliverable")]
    with db.sessions() as session:
        (blocked,) = session.scalars(select(AddressBlock)).all()
    assert blocked.channel == "sms" and "30006" in blocked.reason
    assert "8613800000001" not in blocked.digest  # the address itself is not kept


def test_aliyun_reports_need_the_token_in_their_url(
    client: TestClient, db: Database, live: LiveEngine
) -> None:
    send_to(db, live, "u1", 1)
    (sms,) = messages(db)
    body = [
        {
            "phone_number": "13800000001",
            "success": False,
            "err_code": "MK:0012",
            "err_msg": "用户接收失败",
            "biz_id": "12345^0",
            "out_id": sms.message_id,
            "send_time": "2026-03-01 10:00:00",
            "report_time": "2026-03-01 10:00:03",
            "sms_size": "1",
        }
    ]
    assert client.post("/webhooks/aliyun/not-the-token/report", json=body).status_code == 403
    token = webhook_token(SECRET_KEY, "aliyun")
    reply = client.post(f"/webhooks/aliyun/{token}/report", json=body)
    assert reply.status_code == 200 and reply.json() == {"code": 0, "msg": "成功"}
    (sms,) = messages(db)
    assert sms.status == "failed" and sms.reason == "MK:0012 用户接收失败"
    late = [{**body[0], "success": True, "err_code": "DELIVERED", "err_msg": ""}]
    client.post(f"/webhooks/aliyun/{token}/report", json=late)  # late and out of order
    assert messages(db)[0].status == "failed"
    bad = client.post(f"/webhooks/aliyun/{token}/report", content=b"[{]")
    assert bad.status_code == 400


@pytest.mark.parametrize("text", ["T", "td", " 退订 ", "退订。"])
def test_a_reply_of_t_or_tuiding_unsubscribes_the_number_from_sms(
    client: TestClient, db: Database, live: LiveEngine, text: str
) -> None:
    send_to(db, live, "u1", 1)
    token = webhook_token(SECRET_KEY, "aliyun")
    reply = [{"phone_number": "13800000001", "content": text, "send_time": "2026-03-01 10:00:00"}]
    assert client.post(f"/webhooks/aliyun/{token}/inbound", json=reply).status_code == 200
    with db.sessions() as session:
        profile = session.get(Profile, "user:u1")
        (change,) = session.scalars(select(ConsentChange)).all()
    assert profile is not None and profile.traits["subscriptions"] == {"sms": False}
    assert (change.channel, change.source, change.subscribed) == ("sms", "sms_reply", False)


def test_a_reply_that_asks_nothing_changes_nothing(
    client: TestClient, db: Database, live: LiveEngine
) -> None:
    send_to(db, live, "u1", 1)
    form = {"From": "+8613800000001", "Body": "where is my order?"}
    assert twilio_post(client, "/webhooks/twilio/inbound", form).status_code == 200
    with db.sessions() as session:
        assert session.scalars(select(ConsentChange)).all() == []


def test_twilio_stop_unsubscribes(client: TestClient, db: Database, live: LiveEngine) -> None:
    send_to(db, live, "u1", 1)
    form = {"From": "+8613800000001", "Body": "STOP", "OptOutType": "STOP"}
    reply = twilio_post(client, "/webhooks/twilio/inbound", form)
    assert reply.status_code == 200 and "<Response>" in reply.text
    with db.sessions() as session:
        profile = session.get(Profile, "user:u1")
    assert profile is not None and profile.traits["subscriptions"]["sms"] is False


def test_signed_reports_bounce_and_complain(
    client: TestClient, db: Database, live: LiveEngine
) -> None:
    send_to(db, live, "u1", 1)
    send_to(db, live, "u2", 1)
    sms1, sms2 = (m.message_id for m in messages(db))
    body = orjson.dumps(
        {
            "reports": [
                {"message_id": sms1, "event": "bounced", "permanent": True, "detail": "5.1.1"},
                {"message_id": sms2, "event": "complaint"},
                {"message_id": "msg_unknown", "event": "delivered"},
            ]
        }
    )
    headers = {"X-Journey-Signature": body_signature(SECRET_KEY, body)}
    forged = {"X-Journey-Signature": body_signature("another-secret-key-123456", body)}
    assert client.post("/webhooks/reports", content=body, headers=forged).status_code == 403
    reply = client.post("/webhooks/reports", content=body, headers=headers)
    assert reply.status_code == 200 and reply.json() == {"received": 3, "changed": 2}
    statuses = {m.message_id: (m.status, m.reason) for m in messages(db)}
    assert statuses[sms1] == ("bounced", "5.1.1")
    assert statuses[sms2] == ("delivered", "complaint")
    with db.sessions() as session:
        reasons = sorted(session.scalars(select(AddressBlock.reason)))
    assert reasons == ["bounced: 5.1.1", "complaint"]
    bad = orjson.dumps({"reports": [{"message_id": sms1, "event": "exploded"}]})
    invalid = client.post(
        "/webhooks/reports",
        content=bad,
        headers={"X-Journey-Signature": body_signature(SECRET_KEY, bad)},
    )
    assert invalid.status_code == 400
