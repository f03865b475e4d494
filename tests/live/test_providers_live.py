"""The live engine delivering through real provider protocols, through an outage.

SMS goes to a local server speaking Twilio's Messages API, email to a local SMTP server;
the senders are built from the settings as ``journey run`` builds them. Twilio is down for
the first seconds of the run: the engine retries what is transient, the circuit breaker
holds the queue meanwhile, and in the end every message arrives exactly once.
"""

from __future__ import annotations

import re
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from engine.channels.backoff import Backoff
from engine.channels.config import build_channels
from engine.live.engine import LiveEngine
from engine.project import SourceTree
from engine.settings import Settings
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.schema import Message
from tests.channels.fakes.http import serve
from tests.channels.fakes.smtp import Certificates, Inbox, SmtpServer
from tests.channels.fakes.twilio import TwilioFake

WELCOME = """
id: welcome
name: Welcome
trigger: {event: Signed Up}
start: text
steps:
  text:
    send: {channel: sms, content: {text: "【悦品】欢迎 {{ message_id }} 回T退订"}}
    next: mail
  mail:
    send:
      channel: email
      content: {subject: "Welcome 欢迎", html: "<p>Hello {{ user_id }}</p>"}
    next: end
"""
USERS = 20
OUTAGE = 4.0
IDS = re.compile(r"msg_\w+")


def test_every_message_arrives_once_through_a_provider_outage(db: Database, tmp_path: Path) -> None:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "welcome.yaml").write_text(textwrap.dedent(WELCOME))
    deploy(db, SourceTree.from_directory(tmp_path / "journeys"))
    twilio, inbox = TwilioFake(), Inbox()
    with serve(twilio) as server, SmtpServer(inbox, Certificates(), tls="none") as smtp:
        settings = Settings(
            sms_provider="twilio",
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_from="+15005550006",
            twilio_base_url=server.url,
            email_provider="smtp",
            smtp_url=f"smtp://mailer:s3cret%2Fpass@127.0.0.1:{smtp.port}",
            email_from="悦品商城 <news@shop.example.com>",
            send_timeout=2,
            breaker_threshold=3,
            breaker_cooldown=1,
        )
        channels = build_channels(settings)
        live = LiveEngine(db, channels.registry)
        live.outbox.backoff = Backoff(base=0.5, cap=2.0)
        try:
            server.outage, server.down_until = "error", time.monotonic() + OUTAGE
            Ingestor(db).ingest(
                [
                    {"type": "identify", "userId": f"u{i}", "messageId": f"i{i}",
                     "traits": {"phone": f"+86138{i:08d}", "email": f"u{i}@example.com"}}
                    for i in range(USERS)
                ]
                + [
                    {"type": "track", "userId": f"u{i}", "event": "Signed Up", "messageId": f"s{i}"}
                    for i in range(USERS)
                ]
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                live.run_once()
                with db.sessions() as session:
                    statuses = Counter(session.scalars(select(Message.status)))
                if statuses == {"sent": 2 * USERS}:
                    break
                time.sleep(0.2)
            with db.sessions() as session:
                rows = session.scalars(select(Message)).all()
        finally:
            channels.close()
            live.db.dispose()
    assert Counter(m.status for m in rows) == {"sent": 2 * USERS}, Counter(
        (m.status, m.reason) for m in rows
    )
    sms = [m for m in rows if m.channel == "sms"]
    texted = Counter(IDS.findall(body["Body"])[0] for body in twilio.sent)
    assert texted == Counter({m.message_id: 1 for m in sms})  # each once, none lost
    mailed = Counter(r.message["Message-ID"].strip("<>").split("@")[0] for r in inbox.received)
    assert mailed == Counter({m.message_id: 1 for m in rows if m.channel == "email"})
    assert all(m.segments == 1 and m.provider == "twilio" for m in sms)
    assert max(m.tries for m in sms) < live.outbox.max_tries  # the breaker saved the tries
    assert any(m.tries > 1 for m in sms)  # the outage was felt
    assert all(m.send_at >= datetime(2026, 1, 1, tzinfo=UTC) for m in rows)
