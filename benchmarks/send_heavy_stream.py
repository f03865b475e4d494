"""A send-heavy event stream for `journey simulate`, and the journeys it is meant for.

Most events here make a journey send something at once: order receipts by email,
shipping notices by push (falling back to WeCom, then SMS), price-drop alerts, loyalty
points by SMS or WeCom, back-in-stock emails, cart nudges half an hour later. The
policies of ``benchmarks/send_heavy/journeys`` cap every channel and keep quiet hours on
all but email, so the engine decides caps and deferrals on most events; every user is
bilingual-templated (zh-CN or en).

The file is in the order the events were *received*, as an export of a collector's log
would be: most events arrive within seconds, but a mobile app that was offline sends its
batch minutes or hours late, so timestamps go backwards and the simulator has to sort.

Deterministic for a seed; standard library only.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from session_stream import write_messages

ROOT = Path(__file__).resolve().parent.parent
JOURNEYS = ROOT / "benchmarks" / "send_heavy" / "journeys"
GENERATOR_VERSION = 1  # bump when the generated stream changes, so caches are not reused
START = datetime(2026, 3, 2, tzinfo=UTC)
DAYS = 3

PRODUCTS = [
    ("p001", "无线降噪耳机 Pro", 899.0),
    ("p002", "Smart watch S3", 1299.0),
    ("p003", "保湿精华液 50ml", 329.0),
    ("p004", "Running shoes Air", 599.0),
    ("p005", "真丝枕套", 199.0),
    ("p006", "Espresso machine", 2399.0),
    ("p007", "儿童绘本套装", 128.0),
    ("p008", "Cast-iron pan 28cm", 349.0),
    ("p009", "防晒霜 SPF50", 159.0),
    ("p010", "Mechanical keyboard", 699.0),
    ("p011", "羊毛围巾", 259.0),
    ("p012", "Yoga mat", 189.0),
]
CARRIERS = ["SF Express", "顺丰速运", "JD Logistics", "中通快递", "EMS"]
POINT_REASONS = ["order", "review", "check-in", "签到", "评价晒单"]
NAMES_ZH = ["王伟", "李娜", "张敏", "刘洋", "陈静"]
NAMES_EN = ["Alice", "Ben", "Chloe"]
TIMEZONES_EN = ["Asia/Singapore", "Europe/London", "America/Los_Angeles", "Asia/Shanghai"]

#: What a user does, by weight (identify aside). Most events make some journey send.
EVENT_WEIGHTS = {
    "Order Completed": 12,
    "Order Shipped": 10,
    "Order Delivered": 8,
    "Price Dropped": 16,
    "Points Earned": 12,
    "Product Added": 10,
    "Back In Stock": 6,
    "Product Viewed": 4,
    "page": 3,
    "identify": 3,
}


def traits(rng: random.Random, n: int) -> dict[str, Any]:
    zh = rng.random() < 0.65
    t: dict[str, Any] = {
        "name": rng.choice(NAMES_ZH if zh else NAMES_EN),
        "locale": "zh-CN" if zh else "en",
        "timezone": "Asia/Shanghai" if zh else rng.choice(TIMEZONES_EN),
        "tier": "gold" if rng.random() < 0.2 else "member",
        "subscriptions": {"sms": rng.random() < 0.8, "email": rng.random() < 0.95},
    }
    if rng.random() < 0.93:
        t["email"] = f"user{n}@example.com"
    if rng.random() < 0.95:
        t["phone"] = f"+86139{n:08d}" if zh else f"+1650{n:07d}"
    if rng.random() < 0.75:
        t["push_token"] = f"tok_{rng.getrandbits(64):016x}"
    if zh and rng.random() < 0.6:
        t["wecom_userid"] = f"wx_{n}"
    return t


def moment(rng: random.Random) -> float:
    """Seconds after START: mostly daytime in China, some late at night (quiet hours)."""
    day = rng.randrange(DAYS)
    hour = rng.choice([*range(8, 22)] * 3 + [*range(0, 8)] + [22, 23])  # Shanghai hours
    return day * 86400 + (hour - 8) % 24 * 3600 + rng.uniform(0, 3600)


def delay(rng: random.Random) -> float:
    """Seconds between the event and its arrival: seconds online, up to hours when offline."""
    if rng.random() < 0.85:
        return rng.uniform(0, 3)
    return min(rng.expovariate(1 / 1200), 6 * 3600)


def event(rng: random.Random, kind: str, user: str, serial: int, n: int) -> dict[str, Any]:
    pid, name, price = rng.choice(PRODUCTS)
    if kind == "identify":
        update: dict[str, Any] = {"subscriptions": {"sms": rng.random() < 0.8}}
        if rng.random() < 0.3:
            update["tier"] = "gold"
        return {"type": "identify", "userId": user, "traits": update}
    if kind == "page":
        return {"type": "page", "userId": user, "name": "Orders", "properties": {"path": "/o"}}
    order_id = f"o{serial:08d}"
    properties: dict[str, Any]
    if kind == "Order Completed":
        items = [rng.choice(PRODUCTS) for _ in range(rng.randint(1, 4))]
        products = [
            {"product_id": p, "name": label, "price": cost, "quantity": rng.randint(1, 2)}
            for p, label, cost in items
        ]
        total = round(sum(p["price"] * p["quantity"] for p in products), 2)
        properties = {"order_id": order_id, "total": total, "currency": "CNY", "products": products}
    elif kind in ("Order Shipped", "Order Delivered"):
        properties = {
            "order_id": f"o{rng.randrange(max(serial, 1)):08d}",
            "carrier": rng.choice(CARRIERS),
            "tracking_number": f"SF{rng.getrandbits(40):012d}",
            "eta": (START + timedelta(days=rng.randint(1, 4))).strftime("%m-%d"),
        }
    elif kind == "Price Dropped":
        discount = rng.choice([5, 8, 10, 15, 20, 30])
        properties = {
            "product_id": pid,
            "name": name,
            "old_price": price,
            "price": round(price * (100 - discount) / 100, 2),
            "discount_pct": discount,
        }
    elif kind == "Points Earned":
        points = rng.choice([10, 20, 50, 100, 200])
        properties = {
            "points": points,
            "balance": rng.randint(points, 5000),
            "reason": rng.choice(POINT_REASONS),
        }
    else:  # Product Added, Back In Stock, Product Viewed
        properties = {"product_id": pid, "name": name, "price": price, "currency": "CNY"}
    return {"type": "track", "event": kind, "userId": user, "properties": properties}


def generate(events: int, users: int, seed: int) -> list[dict[str, Any]]:
    """``events`` messages for ``users`` users, in the order they were received."""
    rng = random.Random(seed)
    rows: list[tuple[float, float, int, dict[str, Any]]] = []  # (received, at, serial, message)
    for n in range(1, users + 1):
        at = -rng.uniform(60, 86400)  # known before the window starts
        message = {"type": "identify", "userId": f"u{n:07d}", "traits": traits(rng, n)}
        rows.append((at, at, len(rows), message))
    kinds = list(EVENT_WEIGHTS)
    weights = list(EVENT_WEIGHTS.values())
    # A few customers are much busier than most (Pareto weights), as in real shops.
    cum, acc = [], 0.0
    for _ in range(users):
        acc += rng.paretovariate(1.5)
        cum.append(acc)
    while len(rows) < events:
        batch = min(1000, events - len(rows))
        who = rng.choices(range(users), cum_weights=cum, k=batch)
        for n, kind in zip(who, rng.choices(kinds, weights=weights, k=batch), strict=True):
            at = moment(rng)
            message = event(rng, kind, f"u{n + 1:07d}", len(rows), n + 1)
            rows.append((at + delay(rng), at, len(rows), message))
    rows.sort(key=lambda r: (r[0], r[2]))  # received order, not event order
    messages = []
    for _, at, _, message in rows:
        message["timestamp"] = (
            (START + timedelta(seconds=round(at, 3)))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        message["messageId"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        message["context"] = {"library": {"name": "analytics-ios", "version": "4.1.7"}}
        messages.append(message)
    return messages


def write_stream(path: Path, events: int, users: int, seed: int) -> None:
    write_messages(path, generate(events, users, seed))
