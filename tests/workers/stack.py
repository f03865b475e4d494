"""The distributed engine as ops run it, for the tests: API, Celery workers and scheduler
as real processes, on a Redis server of the test's own (so FLUSHALL hurts nobody else),
a fresh PostgreSQL database, and local servers speaking Twilio's and SMTP's protocols
that record every message they are given.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from engine.project import SourceTree
from engine.store.database import Database
from engine.store.deployments import deploy
from tests.channels.fakes.http import FakeServer, serve
from tests.channels.fakes.smtp import Certificates, Inbox, SmtpServer
from tests.channels.fakes.twilio import TwilioFake
from tests.conftest import free_port
from tests.live.processes import ADMIN, WRITE_KEY, EngineProcess
from tests.live.test_concurrency import COUNT, FLOW

SECRET = "a-secret-key-for-the-tests-only"
IDS = re.compile(r"msg_\w+")


class RedisServer:
    """A throwaway redis-server on a free port."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(root), "--logfile", str(root / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(10)


class Process:
    """One process of the stack (``journey api|worker|scheduler``), restartable."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], root: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log = root / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine.cli", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a kill reaches the whole group (Celery's pool too)
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class ApiProcess(EngineProcess):
    """``journey api`` on a port of its own (one server process)."""

    def __init__(self, root: Path, env: dict[str, str], name: str) -> None:
        super().__init__(root, env["JOURNEY_DATABASE_URL"], name=name, env=env)

    def launch(self) -> None:
        env = dict(self.extra_env)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "api", "--workers", "1",
                 "--port", str(self.port)],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip


class Stack:
    """API processes, workers and a scheduler on one database, broker and pair of fakes."""

    def __init__(
        self,
        root: Path,
        database_url: str,
        *,
        apis: int = 2,
        workers: int = 2,
        schedulers: int = 1,
        journeys: Path | None = None,
    ) -> None:
        self.root = root
        self.database_url = database_url
        self.exits = ExitStack()
        self.redis = RedisServer(root)
        self.exits.callback(self.redis.stop)
        self.twilio = TwilioFake()
        self.sms: FakeServer = self.exits.enter_context(serve(self.twilio))
        self.inbox = Inbox()
        self.smtp = self.exits.enter_context(SmtpServer(self.inbox, Certificates(), tls="none"))
        if journeys is None:  # the two journeys of the chaos tests
            journeys = root / "journeys"
            journeys.mkdir(exist_ok=True)
            (journeys / "flow.yaml").write_text(textwrap.dedent(FLOW))
            (journeys / "count.yaml").write_text(textwrap.dedent(COUNT))
        db = Database(database_url)
        try:
            deploy(db, SourceTree.from_directory(journeys))
        finally:
            db.dispose()
        self.env = dict(
            os.environ,
            JOURNEY_DATABASE_URL=database_url,
            JOURNEY_BROKER_URL=self.redis.url,
            JOURNEY_WRITE_KEYS=WRITE_KEY,
            JOURNEY_ADMIN_TOKEN=ADMIN,
            JOURNEY_SECRET_KEY=SECRET,
            JOURNEY_SMS_PROVIDER="twilio",
            JOURNEY_TWILIO_ACCOUNT_SID=self.twilio.account_sid,
            JOURNEY_TWILIO_AUTH_TOKEN=self.twilio.auth_token,
            JOURNEY_TWILIO_FROM="+15005550006",
            JOURNEY_TWILIO_BASE_URL=self.sms.url,
            JOURNEY_EMAIL_PROVIDER="smtp",
            JOURNEY_SMTP_URL=f"smtp://mailer:s3cret%2Fpass@127.0.0.1:{self.smtp.port}",
            JOURNEY_EMAIL_FROM="Acme <news@shop.example.com>",
            JOURNEY_SEND_TIMEOUT="5",
        )
        self.env.pop("JOURNEY_REDIS_URL", None)
        self.apis = [ApiProcess(root, self.env, f"api{i}") for i in range(apis)]
        self.workers = [
            Process(f"worker{i}", ["worker", "--concurrency", "2"], self.env, root)
            for i in range(workers)
        ]
        self.schedulers = [
            Process(f"scheduler{i}", ["scheduler"], self.env, root) for i in range(schedulers)
        ]
        self.db: Engine = create_engine(database_url, poolclass=NullPool)

    def start(self) -> None:
        for process in (*self.workers, *self.schedulers):
            process.start()
        for api in self.apis:
            api.launch()
        for api in self.apis:
            api.wait_ready(60)

    def stop(self) -> None:
        for process in (*self.apis, *self.workers, *self.schedulers):
            process.stop()
        self.db.dispose()
        self.exits.close()

    def logs(self) -> str:
        parts = [f"--- {p.name}\n{p.tail()}" for p in (*self.workers, *self.schedulers)]
        return "\n".join(parts + [f"--- {a.log.name}\n{a.tail(1000)}" for a in self.apis])

    # -- what happened --

    def scalar(self, sql: str) -> Any:
        with self.db.connect() as connection:
            return connection.execute(text(sql)).scalar()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self.db.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]

    def texted(self) -> Counter[str]:
        """SMS the provider was given, by message id (the text carries it)."""
        return Counter(IDS.findall(sent["Body"])[0] for sent in list(self.twilio.sent))

    def mailed(self) -> Counter[str]:
        """Emails the SMTP server accepted, by message id (their Message-ID)."""
        return Counter(
            received.message["Message-ID"].strip("<>").split("@")[0]
            for received in list(self.inbox.received)
        )


def user_view(api: EngineProcess, user_id: str) -> dict[str, Any]:
    reply = httpx.get(
        f"{api.url}/api/users/{user_id}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
    )
    return reply.json() if reply.status_code == 200 else {}
