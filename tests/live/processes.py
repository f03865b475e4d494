"""`journey run` processes as a user starts them, and a load of concurrent HTTP clients.

:class:`EngineProcess` runs ``python -m engine.cli run journeys`` on a project directory and a
database URL, on a free port, logging to a file; it can be killed with SIGKILL and started
again. :class:`Load` posts Segment messages from many threads to one or more processes,
retrying a request that got no answer on another process with the same body (the same
``messageId``s), as an SDK would, and records which messages were answered 200.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

WRITE_KEY = "test-write-key"
ADMIN = "test-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EngineProcess:
    """A `journey run` process on a project directory and database."""

    def __init__(
        self,
        root: Path,
        database_url: str,
        *,
        keys: bool = True,
        name: str = "engine",
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.database_url = database_url
        self.keys = keys
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / f"{name}.log"
        self.extra_env = env or {}

    def start(self, timeout: float = 30) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process (``wait_ready`` waits until it answers)."""
        env = dict(os.environ, JOURNEY_DATABASE_URL=self.database_url, **self.extra_env)
        env.pop("JOURNEY_WRITE_KEYS", None)
        env.pop("JOURNEY_ADMIN_TOKEN", None)
        if self.keys:
            env.update(JOURNEY_WRITE_KEYS=WRITE_KEY, JOURNEY_ADMIN_TOKEN=ADMIN)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "run", "journeys", "--port", str(self.port)],
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.tail()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"journey run did not come up: {self.tail()}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def user(self, user_id: str) -> dict[str, Any]:
        reply = httpx.get(
            f"{self.url}/api/users/{user_id}",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=5,
        )
        return reply.json() if reply.status_code == 200 else {}


def wait_for(check: Callable[[], Any], timeout: float = 20.0, every: float = 0.1) -> Any:
    """Call ``check`` until it returns something true or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


@dataclass
class Load:
    """Concurrent clients posting to whichever engine processes are up."""

    engines: Sequence[EngineProcess]
    threads: int = 50
    accepted: set[str] = field(default_factory=set)
    answered_at: float = 0.0  # monotonic time of the last 200
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(auth=(WRITE_KEY, ""), timeout=30)
            self._local.client = client
        return client

    def post(self, path: str, body: dict[str, Any], ids: Sequence[str]) -> None:
        """POST until one process answers 200 (retrying elsewhere on no answer or a 5xx)."""
        deadline = time.monotonic() + 120
        while True:
            up = [e for e in self.engines if e.alive] or list(self.engines)
            engine = random.choice(up)
            try:
                reply = self._client().post(f"{engine.url}{path}", json=body)
                if reply.status_code == 200:
                    with self._lock:
                        self.accepted.update(ids)
                        self.answered_at = time.monotonic()
                    return
                if reply.status_code < 500:
                    raise AssertionError(f"{path} answered {reply.status_code}: {reply.text}")
            except httpx.HTTPError:
                pass
            with self._lock:
                self.retries += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"no engine accepted {path} {ids[:3]} within 120 s")
            time.sleep(0.05)

    def send(self, messages: Iterable[dict[str, Any]], *, batch: int = 1) -> None:
        """Post every message (one per request, or ``batch`` per /v1/batch), concurrently."""
        items = list(messages)
        if batch == 1:
            jobs = [(f"/v1/{m['type']}", m, [m["messageId"]]) for m in items]
        else:
            jobs = [
                ("/v1/batch", {"batch": chunk}, [m["messageId"] for m in chunk])
                for chunk in (items[i : i + batch] for i in range(0, len(items), batch))
            ]
        with ThreadPoolExecutor(self.threads) as pool:
            for future in [pool.submit(self.post, *job) for job in jobs]:
                future.result()


def identify(user: str, index: int) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user,
        "messageId": f"id-{user}",
        "traits": {"email": f"{user}@example.com", "phone": f"+8613{index:09d}"},
    }


def go(user: str, number: int) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "Go", "messageId": f"go-{user}-{number}"}


class Killer:
    """While its ``with`` block runs, a thread kills one of ``processes`` (anything with
    ``kill()`` and ``start()``) with SIGKILL every ``every`` seconds, picked by a seeded
    random, and starts it again; ``kills`` counts them."""

    def __init__(self, processes: Sequence[Any], *, seed: int, every: float = 2.0) -> None:
        self.processes = processes
        self.rng = random.Random(seed)
        self.every = every
        self.kills = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            victim = self.rng.choice(self.processes)
            victim.kill()
            self.kills += 1
            victim.start()

    def at_least(self, kills: int) -> None:
        """Wait until ``kills`` have happened (a slow machine kills less often)."""
        while self.kills < kills:
            time.sleep(0.5)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
