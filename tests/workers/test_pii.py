"""No phone number, email, push token or rendered content in logs or broker messages.

A full run of the example journeys, embedded (`journey run`) and distributed (API, Celery
workers and scheduler, with every command Redis receives captured by MONITOR), with test
users whose addresses are distinctive; then the logs and the broker traffic are searched
for those addresses and for text only a rendered message holds.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import FreshDatabases
from tests.live.processes import ADMIN, WRITE_KEY, EngineProcess, Load, wait_for
from tests.workers.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ["pii.canary.one@example.com", "+8613977770001", "push-canary-token-1",
           "pii.canary.two@example.com", "+8613977770002"]  # fmt: skip
RENDERED = "欢迎加入悦品商城"  # in the welcome email's zh-CN subject


def people() -> list[dict[str, Any]]:
    common = {"locale": "zh-CN", "subscriptions": {"sms": True}, "timezone": "Asia/Shanghai"}
    return [
        {"type": "identify", "userId": "canary1", "messageId": "pii-1", "traits": {
            **common, "email": SECRETS[0], "phone": SECRETS[1], "push_token": SECRETS[2]}},
        {"type": "identify", "userId": "canary2", "messageId": "pii-2", "traits": {
            **common, "email": SECRETS[3], "phone": SECRETS[4]}},
        {"type": "track", "userId": "canary1", "event": "Signed Up", "messageId": "pii-3"},
        {"type": "track", "userId": "canary2", "event": "Signed Up", "messageId": "pii-4"},
        {"type": "track", "userId": "canary1", "event": "Product Added", "messageId": "pii-5",
         "properties": {"product_id": "p1", "price": 199}},
        # A rejected message with an address in it: rejections are summed up, not echoed.
        {"type": "track", "userId": "canary2", "messageId": "pii-6", "properties": {
            "email": SECRETS[3]}},
    ]  # fmt: skip


def leaks(text: str) -> list[str]:
    return [secret for secret in [*SECRETS, RENDERED] if secret in text]


def test_an_embedded_run_logs_no_personal_data(tmp_path: Path, database_url: str) -> None:
    shutil.copytree(ROOT / "journeys", tmp_path / "journeys")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    engine = EngineProcess(tmp_path, database_url)
    engine.start()
    try:
        reply = httpx.post(f"{engine.url}/v1/batch", json={"batch": people()},
                           auth=(WRITE_KEY, ""), timeout=10)  # fmt: skip
        assert reply.status_code == 400  # the last one is refused; the others are stored
        sent = wait_for(
            lambda: [
                m for m in engine.user("canary1").get("messages", [])
                if m["status"] == "sent" and m["content"]
            ],
            timeout=20,
        )  # fmt: skip
        assert sent and RENDERED in str(sent[0]["content"])  # rendered, sent, then searched for
        link = httpx.get(f"{engine.url}/api/users/canary1", timeout=5,
                         headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
        assert link.status_code == 200
        time.sleep(0.5)
    finally:
        engine.stop()
    assert leaks(engine.log.read_text(errors="replace")) == []
    assert "/api/users/…" in engine.log.read_text()  # the path was logged, the id cut off


def test_a_distributed_run_puts_no_personal_data_in_logs_or_the_broker(
    fresh_databases: FreshDatabases, tmp_path: Path
) -> None:
    shutil.copytree(ROOT / "journeys", tmp_path / "journeys")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    stack = Stack(
        tmp_path,
        fresh_databases.new("postgresql"),
        apis=1,
        workers=1,
        journeys=tmp_path / "journeys",
    )
    monitor = tmp_path / "redis-monitor.log"
    with monitor.open("wb") as out:
        watcher = subprocess.Popen(
            ["redis-cli", "-p", str(stack.redis.url.rsplit(":", 1)[1].split("/")[0]),
             "MONITOR"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            stack.start()
            load = Load(stack.apis, threads=2)
            load.send([m for m in people() if m["messageId"] != "pii-6"], batch=10)
            assert wait_for(lambda: stack.scalar("SELECT count(*) FROM messages") >= 2, 30)
            assert wait_for(
                lambda: stack.scalar("SELECT count(*) FROM messages WHERE status = 'sent'") >= 2,
                30,
            ), stack.logs()
            time.sleep(1)
        finally:
            stack.stop()
            watcher.terminate()
            watcher.wait(10)
    traffic = monitor.read_text(errors="replace")
    assert "journey.events" in traffic  # the monitor did see the tasks go by
    assert leaks(traffic) == []
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert leaks(logs) == []
