"""A real HTTP server on 127.0.0.1 in a thread, for provider fakes, with outage controls.

A fake is a callable ``(Request) -> Reply``. :class:`FakeServer` serves it on a free
port and, before calling it, applies the outage the test has set:

- ``"error"``: answer 503 (the fake's own error shape when it has one: ``fake.outage_reply``);
- ``"timeout"``: wait ``slow_seconds`` before answering, past the client's timeout;
- ``"reset"``: drop the connection without an answer.

``down_until`` with a ``clock`` makes an outage last for a span of (virtual) time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if self.body is None:
            return b""
        return json.dumps(self.body, ensure_ascii=False).encode()


Fake = Callable[[Request], Reply]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            self.command,
            parts.path,
            {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        owner = self.server.owner
        owner.hits += 1
        mode = owner.current_outage()
        if mode == "reset":
            self.close_connection = True
            self.connection.close()
            return
        if mode == "timeout":
            time.sleep(owner.slow_seconds)
        if mode == "error":
            reply = getattr(owner.fake, "outage_reply", None) or Reply(503, {"error": "down"})
        else:
            owner.requests.append(request)
            reply = owner.fake(request)
        data = reply.encode()
        self.send_response(reply.status)
        headers = {"Content-Type": "application/json; charset=utf-8", **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeServer


class FakeServer:
    def __init__(self, fake: Fake) -> None:
        self.fake = fake
        self.requests: list[Request] = []
        self.hits = 0
        self.outage: str | None = None
        self.down_until: float | None = None
        self.clock: Callable[[], float] = time.monotonic
        self.slow_seconds = 1.5
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def current_outage(self) -> str | None:
        if self.down_until is not None and self.clock() < self.down_until:
            return self.outage or "error"
        return self.outage if self.down_until is None else None

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def serve(fake: Fake) -> Iterator[FakeServer]:
    server = FakeServer(fake).start()
    try:
        yield server
    finally:
        server.stop()
