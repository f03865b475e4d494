"""A seeded random fuzzer of the HTTP API, as a new user's fuzzing run would hit it.

Each request is made from its own seed (``Random(f"{seed}:{index}")``), so a finding is
replayed with :func:`make_request` alone. Requests go to every ``/v1`` and ``/api`` route,
the unsubscribe links, the API documents and paths that do not exist, over a real
keep-alive HTTP connection to uvicorn. Bodies start as valid Segment messages and are
then mutated: fields dropped or replaced by odd values (NUL, unpaired surrogates, huge
and tiny numbers, timestamps at the edge of the range, deep nesting, long strings),
unknown keys added, the JSON broken byte by byte, gzip right and wrong, credentials
missing, wrong or not ASCII.

What must hold: no answer is 5xx; every message of a request answered 200 is stored;
the rows stored are exactly what the answers said was stored.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import func, select

from engine.messages import unsubscribe_url
from engine.store.database import Database
from engine.store.schema import StoredEvent

KINDS = ("track", "identify", "page", "screen", "alias", "group")
EVENTS = ("Signed Up", "Product Added", "Order Completed", "Product Viewed", "签到")
USERS = [f"u{n}" for n in range(40)] + ["李雷", "user@example.com", "42", "a b/c"]

WEIRD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\ud83d\ude00",
    "😀",
    "\u202e",
    "\ufeff",
    "x" * 513,
    "y" * 40_000,
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0000-00-00T00:00:00Z",
    "2026-02-30T10:00:00Z",
    "2026-03-01T10:00:00+25:00",
    "2026-03-01T10:00:00.123456789Z",
    "99999-01-01T00:00:00Z",
    "1e999",
    "NaN",
    "true",
    "null",
    "{{ 7 * 7 }}",
    "<script>alert(1)</script>",
    "'; DROP TABLE events; --",
    "../../etc/passwd",
    "%00",
    "\\u0000",
    "\r\n",
]
WEIRD_NUMBERS: list[Any] = [
    0,
    -1,
    1.5,
    -0.0,
    2**31,
    2**63 - 1,
    2**63,
    2**64,
    -(2**70),
    10**30,
    1e308,
    5e-324,
    True,
    False,
]


def weird_value(r: random.Random, depth: int = 0) -> Any:
    roll = r.random()
    if roll < 0.4:
        return r.choice(WEIRD_STRINGS)
    if roll < 0.65:
        return r.choice(WEIRD_NUMBERS)
    if roll < 0.72:
        return None
    if roll < 0.85 and depth < 3:
        return [weird_value(r, depth + 1) for _ in range(r.randint(0, 3))]
    if roll < 0.95 and depth < 3:
        return {r.choice([*WEIRD_STRINGS, "k"]): weird_value(r, depth + 1) for _ in range(2)}
    nest: Any = r.choice(WEIRD_STRINGS)
    for _ in range(r.choice([10, 100, 300])):
        nest = [nest]
    return nest


def timestamp(r: random.Random) -> str:
    day = r.randint(1, 28)
    offset = r.choice(["Z", "+08:00", "-05:00", ""])
    return f"2026-03-{day:02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00{offset}"


def valid_message(r: random.Random, kind: str, message_id: str) -> dict[str, Any]:
    user = r.choice(USERS)
    message: dict[str, Any] = {"type": kind, "messageId": message_id}
    if r.random() < 0.8:
        message["userId"] = user
    if r.random() < 0.4 or "userId" not in message:
        message["anonymousId"] = f"anon-{r.randint(0, 60)}"
    if r.random() < 0.8:
        message["timestamp"] = timestamp(r)
    if kind == "track":
        message["event"] = r.choice(EVENTS)
        message["properties"] = {"price": r.choice([9.9, 129, 2000]), "category": "beauty"}
    elif kind == "identify":
        message["traits"] = {
            "email": f"{user}@example.com",
            "phone": f"+86138{r.randint(0, 10**8 - 1):08d}",
            "locale": r.choice(["zh-CN", "en", "zh_CN", ""]),
            "timezone": r.choice(["Asia/Shanghai", "UTC", "Mars/Base"]),
            "subscriptions": {"sms": r.random() < 0.7, "email": r.random() < 0.9},
            "vip": r.random() < 0.2,
        }
    elif kind in ("page", "screen"):
        message["name"] = r.choice(["Home", "Pricing", "购物车"])
        message["properties"] = {"path": "/"}
    elif kind == "group":
        message["groupId"] = f"g{r.randint(0, 5)}"
        message["traits"] = {"name": "ACME"}
    else:
        message["userId"] = user
        message["previousId"] = f"anon-{r.randint(0, 60)}"
    if r.random() < 0.3:
        message["context"] = {"ip": "127.0.0.1", "library": {"name": "fuzz", "version": "1"}}
    return message


def mutate(r: random.Random, value: Any) -> Any:
    """``value`` with one random change somewhere inside it."""
    if not isinstance(value, dict | list) or r.random() < 0.1:
        return weird_value(r)
    if isinstance(value, list):
        if not value:
            return [weird_value(r)]
        index = r.randrange(len(value))
        copy = list(value)
        copy[index] = mutate(r, copy[index])
        return copy
    copy_dict = dict(value)
    action = r.random()
    if not copy_dict or action < 0.2:
        copy_dict[r.choice([*WEIRD_STRINGS[:8], "type", "userId", "extra"])] = weird_value(r)
    elif action < 0.4:
        del copy_dict[r.choice(list(copy_dict))]
    else:
        key = r.choice(list(copy_dict))
        copy_dict[key] = mutate(r, copy_dict[key])
    return copy_dict


def encode(r: random.Random, body: Any) -> bytes:
    """JSON text of ``body``: escaped or raw UTF-8 (raw bytes ED A0 80 for a surrogate),
    sometimes broken byte by byte."""
    ascii_only = r.random() < 0.5
    try:
        text = json.dumps(body, ensure_ascii=ascii_only)
    except ValueError:  # NaN and friends are not JSON; send them anyway
        text = json.dumps(body, ensure_ascii=ascii_only, allow_nan=True)
    data = text.encode("utf-8", "surrogatepass")
    roll = r.random()
    if roll < 0.04 and data:
        cut = r.randrange(len(data))
        data = data[:cut]
    elif roll < 0.08 and data:
        spot = r.randrange(len(data))
        data = data[:spot] + bytes([r.randrange(256)]) + data[spot + 1 :]
    elif roll < 0.10:
        data = r.choice([b"", b"null", b"[]", b"NaN", b"1e999", b'"x"', b"\xff\xfe", b"[" * 5000])
    return data


@dataclass
class Request:
    method: str
    route: str  # the route template it exercises
    path: str
    headers: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    #: message ids that must be stored when the answer is 200
    ids: list[str] = field(default_factory=list)


@dataclass
class Credentials:
    write_key: str
    admin_token: str
    secret_key: str


def _auth(r: random.Random, write_key: str, body: dict[str, Any] | None) -> dict[str, Any]:
    roll = r.random()
    if roll < 0.82:
        token = base64.b64encode(f"{write_key}:".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if roll < 0.87 and body is not None:
        body["writeKey"] = write_key
        return {}
    return r.choice(
        [
            {},
            {"Authorization": "Basic " + base64.b64encode(b"wrong:").decode()},
            {"Authorization": b"Basic \xff\xfe"},
            {"Authorization": "Basic !!!"},
            {"Authorization": f"Bearer {write_key}"},
            {"Authorization": b"\xc3\xa9"},
        ]
    )


def _stored_id(item: Any) -> str | None:
    """The id an item that was accepted is stored under, when the item names it."""
    if isinstance(item, dict):
        value = item.get("messageId")
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value)
    return None


def _tracking(r: random.Random, seed: str, credentials: Credentials) -> Request:
    batch = r.random() < 0.45
    count = r.choice([1, 2, 5, 20, 100]) if batch else 1
    items: list[Any] = [valid_message(r, r.choice(KINDS), f"fz-{seed}-{n}") for n in range(count)]
    for _ in range(r.choice([0, 0, 1, 1, 2, 4])):  # about a third of requests stay valid
        spot = r.randrange(count)
        items[spot] = mutate(r, items[spot])
    if batch:
        route = r.choice(["/v1/batch", "/v1/import"])
        body: Any = {"batch": items}
        if r.random() < 0.2:
            body["context"] = mutate(r, {"library": {"name": "fuzz"}})
        if r.random() < 0.05:
            body = mutate(r, body)
    else:
        kind = r.choice(KINDS)
        route = f"/v1/{kind}"
        body = items[0]
        if isinstance(body, dict) and r.random() < 0.5:
            body = {k: v for k, v in body.items() if k != "type"}  # the path sets it
    headers = _auth(r, credentials.write_key, body if isinstance(body, dict) else None)
    headers["Content-Type"] = r.choice(["application/json", "text/plain", "application/json"])
    content = encode(r, body)
    ids = _ids_in(content, batch)  # read from the bytes sent: they may have been broken
    roll = r.random()
    if roll < 0.1:
        headers["Content-Encoding"] = "gzip"
        content = gzip.compress(content)
    elif roll < 0.12:
        headers["Content-Encoding"] = r.choice(["gzip", "br", "x-gzip"])  # not gzip at all
    elif roll < 0.125:  # over the batch limit
        filler = {"type": "track", "userId": "u1", "event": "e", "properties": {"p": "z" * 30_000}}
        content = json.dumps({"batch": [filler] * 20}).encode()
    return Request("POST", route, route, headers, content, ids)


def _ids_in(content: bytes, batch: bool) -> list[str]:
    """The message ids the server will store ``content`` under, should it answer 200."""
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return []
    sent = body.get("batch") if batch and isinstance(body, dict) else [body]
    return [i for i in map(_stored_id, sent if isinstance(sent, list) else []) if i is not None]


def _q(text: str) -> str:
    """``text`` percent-encoded for a path, a lone surrogate as its raw bytes."""
    return quote(text, safe="", errors="surrogatepass")


def _odd_id(r: random.Random) -> str:
    return r.choice(
        [
            r.choice(USERS),
            f"anon-{r.randint(0, 60)}",
            "nobody",
            _q("\x00"),
            "a%00b",
            "%ED%A0%80",
            "%FF",
            _q("李雷"),
            "x" * 2000,
            "a/b/c",
            "..",
            "%2F",
            _q("\ud800"),
        ]
    )


def _admin(r: random.Random, credentials: Credentials) -> Request:
    headers: dict[str, Any] = r.choice(
        [
            {"Authorization": f"Bearer {credentials.admin_token}"},
            {"Authorization": f"Bearer {credentials.admin_token}"},
            {"Authorization": "Basic " + base64.b64encode(f"x:{credentials.admin_token}".encode())
             .decode()},
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": b"Bearer \xff"},
        ]
    )  # fmt: skip
    if r.random() < 0.7:
        query = r.choice(["", "", "?limit=5", "?limit=0", "?limit=-1", "?limit=abc",
                          "?limit=100000000000000000000", "?limit=1000"])  # fmt: skip
        return Request("GET", "/api/users/{user_id}", f"/api/users/{_odd_id(r)}{query}", headers)
    return Request("GET", "/api/journeys", "/api/journeys", headers)


def _unsubscribe(r: random.Random, credentials: Credentials) -> Request:
    user = r.choice(["user:" + r.choice(USERS), f"anon:anon-{r.randint(0, 60)}"])
    url = unsubscribe_url(
        "http://x",
        f"msg-{r.randint(0, 99)}",
        user_key=user,
        channel=r.choice(["email", "sms", "push", "wecom", "fax"]),
        secret_key=credentials.secret_key if r.random() < 0.7 else "someone-elses-key-123",
    )
    token = url.removeprefix("http://x/unsubscribe/")
    roll = r.random()
    if roll < 0.2:
        token = token[: r.randrange(len(token))]
    elif roll < 0.3:
        token = _q(r.choice(WEIRD_STRINGS)) or "x"
    method = r.choice(["GET", "POST", "POST"])
    content = r.choice([None, b"List-Unsubscribe=One-Click", b"confirm=yes", b"\xff" * 2000])
    headers = {"Accept-Language": r.choice(["zh-CN", "en;q=0.5,zh;q=0.9", "*", "q=;;,"])}
    path = f"/unsubscribe/{token}"
    return Request(method, "/unsubscribe/{token}", path, headers, content)


def _elsewhere(r: random.Random, credentials: Credentials) -> Request:
    path = r.choice(["/healthz", "/docs", "/redoc", "/openapi.json", "/v1/nothing", "/", "/api"])
    method = r.choice(["GET", "GET", "POST", "PUT", "DELETE"])
    headers = r.choice([{}, {"Authorization": f"Bearer {credentials.admin_token}"}])
    return Request(method, path, path, headers, b"{}" if method != "GET" else None)


def make_request(seed: int, index: int, credentials: Credentials) -> Request:
    """Request number ``index`` of the run with ``seed``: the same every time."""
    r = random.Random(f"{seed}:{index}")
    roll = r.random()
    if roll < 0.75:
        return _tracking(r, f"{seed}-{index}", credentials)
    if roll < 0.87:
        return _admin(r, credentials)
    if roll < 0.95:
        return _unsubscribe(r, credentials)
    return _elsewhere(r, credentials)


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    answers: list[int] = field(default_factory=list)  # every status, in order
    routes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    promised: set[str] = field(default_factory=set)  # ids answered 200
    reported_stored: int = 0  # what the answers said they stored
    lost: list[str] = field(default_factory=list)
    stored_rows: int = 0  # rows the run added

    def summary(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"{self.requests} requests ({codes}); 5xx: {len(self.server_errors)}; "
            f"events answered 200: {len(self.promised)}, lost: {len(self.lost)}; "
            f"rows: {self.stored_rows}, answers said stored: {self.reported_stored}"
        )


def run(base_url: str, db: Database, credentials: Credentials, seed: int, count: int) -> FuzzReport:
    """Send ``count`` requests of the run ``seed`` to ``base_url``; check the store after."""
    report = FuzzReport()
    rows_before = _rows(db)
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for index in range(count):
            request = make_request(seed, index, credentials)
            answer = client.request(
                request.method, request.path, headers=request.headers, content=request.content
            )
            report.requests += 1
            report.statuses[answer.status_code] += 1
            report.answers.append(answer.status_code)
            report.routes[request.route] += 1
            if answer.status_code >= 500:
                report.server_errors.append(
                    f"seed {seed} request {index}: {request.method} {request.route} -> "
                    f"{answer.status_code} {answer.text[:200]!r}"
                )
            if answer.headers.get("content-type", "").startswith("application/json"):
                data = answer.json()
                if isinstance(data, dict) and isinstance(data.get("stored"), int):
                    report.reported_stored += data["stored"]
            if answer.status_code == 200 and request.route.startswith("/v1/"):
                report.promised.update(request.ids)
    report.stored_rows = _rows(db) - rows_before
    with db.transaction() as session:
        promised = sorted(report.promised)
        found: set[str] = set()
        for start in range(0, len(promised), 500):
            chunk = promised[start : start + 500]
            found.update(
                session.scalars(
                    select(StoredEvent.message_id).where(StoredEvent.message_id.in_(chunk))
                )
            )
    report.lost = [message_id for message_id in promised if message_id not in found]
    return report


def _rows(db: Database) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(StoredEvent)) or 0
