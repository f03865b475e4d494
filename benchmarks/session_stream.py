"""The shopping-session event stream of the README's benchmark for `journey simulate`.

One `identify` per user (name, phone, email, zh-CN/en locale, time zone, SMS consent; some
with a WeCom id, a push token, VIP), a fifth of the users signing up during the 14 days
(`Signed Up`), and shopping sessions spread over the 14 days: pages, `Product Viewed`
(matches no journey), `Product Added`, `Checkout Started` and `Order Completed`, in funnel
proportions. About one event in three leads to a trace line of the example journeys.
The file is in time order. Deterministic for a seed; standard library only.
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
JOURNEYS = ROOT / "journeys"
GENERATOR_VERSION = 2  # bump when the generated stream changes, so caches are not reused
START = datetime(2026, 3, 2, tzinfo=UTC)
DAYS = 14

CATEGORIES = ["electronics", "beauty", "home", "apparel", "books", "toys", "grocery"]
PAGES = [("Home", "/"), ("Search", "/search"), ("Category", "/c"), ("Help", "/help")]
TIMEZONES_EN = ["America/New_York", "America/Los_Angeles", "Europe/London", "Asia/Singapore"]


@dataclass(frozen=True)
class Product:
    product_id: str
    sku: str
    name: str
    category: str
    price: float


@dataclass
class Stream:
    """The events of one run, before they are written: (seconds since START, order, message)."""

    rows: list[tuple[float, int, dict[str, Any]]]
    rng: random.Random

    def add(self, at: float, message: dict[str, Any]) -> None:
        self.rows.append((at, len(self.rows), message))


def catalog(rng: random.Random, size: int = 500) -> list[Product]:
    products = []
    for i in range(size):
        category = CATEGORIES[i % len(CATEGORIES)]
        price = round(
            rng.choice([9.9, 19.9, 29, 49, 69, 99, 199, 499, 1299]) * rng.uniform(0.8, 1.2)
        )
        products.append(
            Product(f"p{i:04d}", f"SKU-{i:05d}", f"{category} item {i}", category, price)
        )
    return products


def iso(at: float) -> str:
    return (START + timedelta(seconds=int(at))).strftime("%Y-%m-%dT%H:%M:%SZ")


def traits(rng: random.Random, n: int) -> dict[str, Any]:
    zh = rng.random() < 0.6
    t: dict[str, Any] = {
        "name": rng.choice(["王伟", "李芳", "张娜", "刘敏"] if zh else ["Alice Wong", "Bob Lee"]),
        "email": f"user{n}@example.com",
        "locale": "zh-CN" if zh else "en",
        "timezone": "Asia/Shanghai" if zh else rng.choice(TIMEZONES_EN),
        "subscriptions": {"sms": rng.random() < 0.9, "email": True},
    }
    if rng.random() < 0.95:  # a few users never gave a phone number: `no_address`
        t["phone"] = f"+86138{n:08d}" if zh else f"+1415{n:07d}"
    if zh and rng.random() < 0.3:
        t["wecom_userid"] = f"wx_{n}"
    if rng.random() < 0.4:  # has the app
        t["push_token"] = f"tok_{rng.getrandbits(64):016x}"
    if rng.random() < 0.1:
        t["vip"] = True
    return t


def described(p: Product, **extra: Any) -> dict[str, Any]:
    """A product as Segment's e-commerce events describe it."""
    return {
        "product_id": p.product_id,
        "sku": p.sku,
        "name": p.name,
        "category": p.category,
        "price": p.price,
        **extra,
    }


def session(
    stream: Stream, user: str, at: float, products: list[Product], orders: Iterator[int]
) -> None:
    """One shopping visit: a page or two, some products viewed, maybe the funnel further on."""
    rng = stream.rng

    def track(event: str, properties: dict[str, Any]) -> None:
        stream.add(at, {"type": "track", "event": event, "userId": user, "properties": properties})

    name, path = rng.choice(PAGES)
    stream.add(at, {"type": "page", "userId": user, "name": name, "properties": {"path": path}})
    viewed = rng.sample(products, rng.randint(1, 6))
    for p in viewed:
        at += rng.uniform(10, 120)
        track("Product Viewed", described(p, currency="CNY"))
    if rng.random() > 0.35:
        return
    cart = viewed[: rng.randint(1, len(viewed))]
    for p in cart:
        at += rng.uniform(5, 60)
        track("Product Added", described(p, quantity=1))
    total = round(sum(p.price for p in cart), 2)
    order_id = f"o{next(orders):07d}"
    if rng.random() > 0.5:
        return  # cart abandoned
    at += rng.uniform(30, 600)
    track("Checkout Started", {"order_id": order_id, "value": total, "currency": "CNY"})
    if rng.random() > 0.6:
        return  # checkout abandoned
    at += rng.uniform(60, 3 * 3600)  # some pay hours later, after the cart nudge
    track(
        "Order Completed",
        {
            "order_id": order_id,
            "total": total,
            "revenue": total,
            "currency": "CNY",
            "category": cart[0].category,
            "products": [{"product_id": p.product_id, "price": p.price} for p in cart],
        },
    )


def generate(events: int, users: int, seed: int) -> list[dict[str, Any]]:
    """`events` messages for `users` users, in time order, with unique messageIds."""
    rng = random.Random(seed)
    products = catalog(rng)
    stream = Stream([], rng)
    orders = iter(range(1, sys.maxsize))
    span = DAYS * 86400.0
    first_seen: list[float] = []
    for n in range(1, users + 1):
        user = f"u{n:07d}"
        if rng.random() < 0.2:  # new this fortnight: identify and sign up
            joined = rng.uniform(0, span * 0.9)
            stream.add(joined, {"type": "identify", "userId": user, "traits": traits(rng, n)})
            stream.add(
                joined + 1,
                {
                    "type": "track",
                    "event": "Signed Up",
                    "userId": user,
                    "properties": {"method": rng.choice(["phone", "email"])},
                },
            )
        else:  # known before the window starts
            joined = -rng.uniform(60, 86400)
            stream.add(joined, {"type": "identify", "userId": user, "traits": traits(rng, n)})
        first_seen.append(max(joined + 60, 0.0))
    # A few users are much more active than most (Pareto weights), as in real shops.
    cum, acc = [], 0.0
    for _ in range(users):
        acc += rng.paretovariate(1.5)
        cum.append(acc)
    while len(stream.rows) < events:
        batch = max(1, min(1000, (events - len(stream.rows)) // 8))
        for n in rng.choices(range(users), cum_weights=cum, k=batch):
            at = rng.uniform(first_seen[n], span)
            session(stream, f"u{n + 1:07d}", at, products, orders)
    rows = stream.rows
    del rows[events:]  # the last session generated, not the latest in time: keeps the spread
    rows.sort(key=lambda r: (r[0], r[1]))
    messages = []
    for at, _, message in rows:
        message["timestamp"] = iso(at)
        message["messageId"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        message["context"] = {"library": {"name": "analytics-python", "version": "2.3.1"}}
        messages.append(message)
    return messages


def write_messages(path: Path, messages: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, as SDK exports write them; atomically replaces ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for message in messages:
            out.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n")
    tmp.replace(path)


def write_stream(path: Path, events: int, users: int, seed: int) -> None:
    write_messages(path, generate(events, users, seed))
