"""The API served by uvicorn, as clients meet it on the wire: raw sockets and keep-alive.

An unexpected error answers 500 with ``Connection: close``; a body that stops arriving is
answered 408 and its connection closed; fifty concurrent clients on the embedded SQLite
store all get 200 and every event is stored.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from engine.api import create_app
from engine.live.embedded import Workers
from engine.live.engine import LiveEngine
from engine.project import SourceTree
from engine.settings import Settings
from engine.store.database import Database
from engine.store.deployments import deploy
from tests.api.support import ADMIN_TOKEN, AUTH, WRITE_KEY, basic, events, serve

ROOT = Path(__file__).resolve().parents[2]


def exchange(url: str, request: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send raw ``request`` bytes, read the answer; returns it and whether the server
    closed the connection after it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                return answer, True
            answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        while len(rest) < length:
            rest += sock.recv(65536)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
        return head + b"\r\n\r\n" + rest, closed


def header(answer: bytes, name: bytes) -> bytes | None:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().lower()
    return None


def test_a_500_says_connection_close(db: Database, settings: Settings) -> None:
    app = create_app(db, settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with serve(app) as url:
        answer, closed = exchange(url, b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n", timeout=3)
        assert answer.startswith(b"HTTP/1.1 500")
        assert header(answer, b"connection") == b"close"
        assert b'"code":"internal"' in answer
        assert closed
        with httpx.Client(base_url=url) as client:  # keep-alive: the next request still works
            assert client.get("/boom").status_code == 500
            assert client.get("/healthz").status_code == 200


def test_a_body_shorter_than_its_content_length_times_out(db: Database) -> None:
    settings = Settings(write_keys=[WRITE_KEY], body_timeout=0.5)
    with serve(create_app(db, settings)) as url:
        auth = AUTH["Authorization"].encode()
        request = (
            b"POST /v1/track HTTP/1.1\r\nHost: t\r\nAuthorization: " + auth + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"userId":'
        )
        started = time.monotonic()
        answer, closed = exchange(url, request, timeout=10)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert header(answer, b"connection") == b"close"
        assert b'"code":"request_timeout"' in answer
        assert closed
        assert time.monotonic() - started < 9  # answered by the timeout, not the socket's
    assert events(db) == []


def test_a_slow_but_steady_body_is_read(db: Database) -> None:
    settings = Settings(write_keys=[WRITE_KEY], body_timeout=1.0)
    payload = b'{"userId": "u1", "event": "Signed Up", "messageId": "slow"}'
    with serve(create_app(db, settings)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            head = (
                b"POST /v1/track HTTP/1.1\r\nHost: t\r\nAuthorization: "
                + AUTH["Authorization"].encode()
                + b"\r\nContent-Length: %d\r\n\r\n" % len(payload)
            )
            sock.sendall(head)
            for start in range(0, len(payload), 20):  # each piece within the timeout
                time.sleep(0.3)
                sock.sendall(payload[start : start + 20])
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert [row.message_id for row in events(db)] == ["slow"]


# --------------------------------------------------------------------------- concurrency


# Enough load that, when every transaction fought for the SQLite file lock, some request
# waited out the 10 s busy timeout and got 503 (it did, every time, at this size).
CLIENTS = 50
BATCHES = 5
PER_BATCH = 300


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Database]:
    """The embedded store: a SQLite file (the finding is SQLite's)."""
    database = Database(f"sqlite:///{tmp_path / 'journey.db'}")
    yield database
    database.dispose()


@pytest.fixture
def running(embedded: Database, settings: Settings) -> Iterator[str]:
    """The API and the engine threads on one database, as ``journey run`` has them."""
    db = embedded
    deploy(db, SourceTree.from_directory(ROOT / "journeys"))
    workers = Workers(LiveEngine(db))
    app: FastAPI = create_app(db, settings, on_ingest=workers.wake)
    workers.start()
    try:
        with serve(app) as url:
            yield url
    finally:
        workers.stop()


def test_fifty_concurrent_clients_on_sqlite_all_get_200(running: str, embedded: Database) -> None:
    statuses: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(number: int) -> None:
        try:
            with httpx.Client(base_url=running, timeout=60) as http:
                start.wait()
                for batch in range(BATCHES):
                    items = [
                        {
                            "type": "track" if i % 5 else "identify",
                            "userId": f"u{number}-{i % 7}",
                            "event": "Product Added",
                            "properties": {"price": i},
                            "traits": {"email": f"u{number}@example.com"},
                            "messageId": f"c{number}-b{batch}-i{i}",
                        }
                        for i in range(PER_BATCH)
                    ]
                    answer = http.post("/v1/batch", json={"batch": items}, headers=AUTH)
                    with lock:
                        statuses.append(answer.status_code)
        except BaseException as exc:
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert failures == []
    assert sorted(set(statuses)) == [200], [s for s in statuses if s != 200]
    assert len(statuses) == CLIENTS * BATCHES
    assert len(events(embedded)) == CLIENTS * BATCHES * PER_BATCH


# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_the_api_documents_need_the_admin_token(
    path: str, db: Database, settings: Settings
) -> None:
    with serve(create_app(db, settings)) as url, httpx.Client(base_url=url) as client:
        refused = client.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")  # browsers prompt
        assert client.get(path, headers=basic("anyone", "wrong")).status_code == 401
        bearer = client.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert bearer.status_code == 200
        browser = client.get(path, headers=basic("admin", ADMIN_TOKEN))
        assert browser.status_code == 200
    if path == "/openapi.json":
        assert "/v1/batch" in browser.json()["paths"]
