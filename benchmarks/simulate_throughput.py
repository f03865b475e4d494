"""Throughput of `journey simulate` on a large, realistic event stream.

The requirement: a 1,000,000-event stream over 100,000 users must simulate in well under a
minute. This script generates such a stream (deterministic for a seed, cached under
benchmarks/.cache/), runs the simulation in-process exactly as the `journey` console script
does, and compares its wall time with the time merely to read and parse the same file.

    python3 scripts/dev.py bench                 # 1,000,000 events, 100,000 users
    python3 scripts/dev.py bench --quick         # 100,000 events, 10,000 users
    python3 scripts/dev.py bench --quick --profile   # plus the top of a cProfile

The stream: one `identify` per user (name, phone, email, zh-CN/en locale, time zone, SMS
consent; some with a WeCom id, a push token, VIP), a fifth of the users signing up during the
14 days (`Signed Up`), and shopping sessions spread over the 14 days: pages, `Product Viewed`
(matches no journey), `Product Added`, `Checkout Started` and `Order Completed`, in funnel
proportions.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
GENERATOR_VERSION = 2  # bump when the generated stream changes, so caches are not reused
START = datetime(2026, 3, 2, tzinfo=UTC)
DAYS = 14
TARGET_SECONDS = 60.0

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
        track(
            "Product Viewed",
            {
                "product_id": p.product_id,
                "sku": p.sku,
                "name": p.name,
                "category": p.category,
                "price": p.price,
                "currency": "CNY",
            },
        )
    if rng.random() > 0.35:
        return
    cart = viewed[: rng.randint(1, len(viewed))]
    for p in cart:
        at += rng.uniform(5, 60)
        track(
            "Product Added",
            {
                "product_id": p.product_id,
                "sku": p.sku,
                "name": p.name,
                "category": p.category,
                "price": p.price,
                "quantity": 1,
            },
        )
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


def write_stream(path: Path, events: int, users: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for message in generate(events, users, seed):
            out.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n")
    tmp.replace(path)


def stream_path(events: int, users: int, seed: int) -> Path:
    return CACHE / f"events-{events}-{users}-s{seed}-v{GENERATOR_VERSION}.jsonl"


def ensure_stream(events: int, users: int, seed: int) -> Path:
    """The cached stream; generated in a child process so its memory stays out of our peak RSS."""
    path = stream_path(events, users, seed)
    if not path.exists():
        print(f"generating {path.relative_to(ROOT)} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--generate-only",
                "--events",
                str(events),
                "--users",
                str(users),
                "--seed",
                str(seed),
            ],
            check=True,
        )
        print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


def baseline(path: Path, loads: Callable[[bytes], Any]) -> float:
    """Seconds to read the file and parse every line, keeping nothing."""
    started = time.perf_counter()
    with path.open("rb") as f:
        for line in f:
            loads(line)
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def simulate(
    journeys: Path, events: Path, trace: Path, err: Path, profile: bool
) -> tuple[float, int]:
    """Run `journey simulate` in-process as the console script does; (seconds, exit code)."""
    from engine.cli import main  # the console script's entry point (pyproject [project.scripts])

    profiler = cProfile.Profile() if profile else None
    code = 0
    with (
        trace.open("w", encoding="utf-8") as out,
        err.open("w", encoding="utf-8") as errors,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(errors),
    ):
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        try:
            result = main(["simulate", str(journeys), str(events)])
            code = result if isinstance(result, int) else 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            if profiler:
                profiler.disable()
            out.flush()
        seconds = time.perf_counter() - started
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(15)
        print(text.getvalue())
    return seconds, code


def trace_summary(trace: Path) -> tuple[int, Counter[str]]:
    kinds: Counter[str] = Counter()
    lines = 0
    with trace.open("rb") as f:
        for line in f:
            lines += 1
            item = json.loads(line)
            kind = item.get("type", "?")
            if kind == "message":
                kind = f"message {item.get('status')}"
                if item.get("reason"):
                    kind += f"/{item['reason']}"
            kinds[kind] += 1
    return lines, kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="100,000 events over 10,000 users")
    parser.add_argument("--journeys", type=Path, default=ROOT / "journeys")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.users = 100_000, 10_000
    if args.generate_only:
        write_stream(
            stream_path(args.events, args.users, args.seed), args.events, args.users, args.seed
        )
        return 0

    import orjson  # a project dependency; imported here so --generate-only needs nothing

    path = ensure_stream(args.events, args.users, args.seed)
    json_s = baseline(path, json.loads)
    orjson_s = baseline(path, orjson.loads)
    rss_before = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="journey-bench-") as tmp:
        trace, err = Path(tmp) / "trace.jsonl", Path(tmp) / "stderr.txt"
        seconds, code = simulate(args.journeys, path, trace, err, args.profile)
        rss = peak_rss_mb()
        trace_mb = trace.stat().st_size / 1e6
        lines, kinds = trace_summary(trace)
        stderr_tail = err.read_text(encoding="utf-8").splitlines()[-12:]

    print(f"journey simulate exit code {code}; its stderr ends with:")
    print("".join(f"  | {line}\n" for line in stderr_tail), end="")
    print("trace lines by kind: " + ", ".join(f"{k} {v:,}" for k, v in kinds.most_common()))
    rows = [
        ("events", f"{args.events:,}"),
        ("users", f"{args.users:,}"),
        ("input file", f"{path.stat().st_size / 1e6:,.1f} MB"),
        ("trace lines written", f"{lines:,} ({trace_mb:,.1f} MB)"),
        ("simulate seconds", f"{seconds:,.2f}"),
        ("events / s", f"{args.events / seconds:,.0f}"),
        ("peak RSS", f"{rss:,.0f} MB (before simulate: {rss_before:,.0f} MB)"),
        ("baseline json.loads s", f"{json_s:,.2f}"),
        ("baseline orjson.loads s", f"{orjson_s:,.2f}"),
        ("ratio simulate/json", f"{seconds / json_s:,.1f}x"),
        ("ratio simulate/orjson", f"{seconds / orjson_s:,.1f}x"),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    if not args.quick and args.events >= 1_000_000:
        verdict = "within" if seconds < TARGET_SECONDS else "OVER"
        print(f"target: under {TARGET_SECONDS:.0f} s for 1,000,000 events -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
