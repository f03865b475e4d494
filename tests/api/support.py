"""Helpers shared by the API tests: credentials, requests, reading the events table."""

from __future__ import annotations

import base64
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import uvicorn
from sqlalchemy import select

from engine.store.database import Database
from engine.store.schema import StoredEvent

WRITE_KEY = "wk_live_test"
OTHER_WRITE_KEY = "wk_second"
ADMIN_TOKEN = "admin-token-for-tests"
SECRET_KEY = "secret-key-for-tests-0123456789"


def basic(user: str, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic(WRITE_KEY)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def body(data: Any) -> bytes:
    return orjson.dumps(data)


def gzipped(data: Any) -> bytes:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return gzip.compress(raw)


def events(db: Database) -> list[StoredEvent]:
    """Every stored event, in ``seq`` order."""
    with db.transaction() as session:
        return list(session.scalars(select(StoredEvent).order_by(StoredEvent.seq)))


def track(message_id: str | None = "m-1", user_id: str = "u42", **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "userId": user_id,
        "properties": {"order_id": "o1", "total": 99.5},
        "timestamp": "2026-03-01T10:00:00Z",
    }
    if message_id is not None:
        message["messageId"] = message_id
    message.update(extra)
    return message


@contextmanager
def serve(app: Any, **options: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn on a free 127.0.0.1 port in a background
    thread, for as long as the block runs; yields the base URL."""
    # IPPROTO_TCP named, so asyncio sets TCP_NODELAY on accepted connections (it does so
    # only for sockets whose protocol says TCP); otherwise every keep-alive answer waits
    # 40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
