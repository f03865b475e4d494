"""Prometheus metrics: what every process counts, and what the database says at a scrape.

Counted where it happens (every process; in multiprocess mode where processes fork):

- ``journey_events_total{outcome}``: messages the API accepted, rejected, or found already
  stored (``duplicate``);
- ``journey_inputs_applied_total{kind}``: events and timers applied, events ``dropped``
  (erased users);
- ``journey_messages_total{channel,status,reason}``: each outcome of a delivery (``sent``,
  ``failed``, ``suppressed``; ``delivered``, ``bounced`` from providers' reports);
- ``journey_provider_seconds{channel,provider}``: how long provider calls took.

Read from the database at a scrape, by :class:`DatabaseCollector` (a few index lookups,
cached for a second so many scrapers cost one read):

- ``journey_runs_active{journey,step}``, ``journey_timer_lag_seconds`` (now minus the
  oldest due timer; 0 when none is due), ``journey_outbox_backlog`` (messages due and not
  sent), ``journey_dead_letters`` (not replayed), ``journey_queue_depth{queue}`` (Celery
  queues, when the broker is Redis).

Multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``journey worker`` and
``journey api`` set it for their forked processes), counters are kept in files there and
summed at a scrape.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from engine.queues import queue_depths
from engine.store.backlog import backlog
from engine.store.database import Database
from engine.store.schema import Run

EVENTS = Counter("journey_events_total", "Segment messages the API received", ["outcome"])
INPUTS = Counter("journey_inputs_applied_total", "Inputs the engine applied", ["kind"])
MESSAGES = Counter(
    "journey_messages_total", "Outcomes of messages", ["channel", "status", "reason"]
)
PROVIDER_SECONDS = Histogram(
    "journey_provider_seconds",
    "Time provider calls took",
    ["channel", "provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def message_outcome(channel: str, status: str, reason: str | None) -> None:
    """Count one message outcome (``reason`` only for suppressions: a bounded label)."""
    MESSAGES.labels(channel, status, reason if status == "suppressed" and reason else "").inc()


#: Statuses that are an outcome of a message (a retry left ``pending`` is not one yet).
OUTCOMES = frozenset({"sent", "failed", "suppressed", "delivered", "bounced"})


def count_outcomes(outcomes: Iterable[tuple[str, str, str | None]]) -> None:
    """Count the outcomes among (channel, status, reason) triples."""
    for channel, status, reason in outcomes:
        if status in OUTCOMES:
            message_outcome(channel, status, reason)


def count_inputs(events: int, timers: int, dead: int) -> None:
    """Count a round's inputs: events and timers applied, inputs set aside as dead letters."""
    for kind, n in (("event", events), ("timer", timers), ("dead_letter", dead)):
        if n:
            INPUTS.labels(kind).inc(n)


@contextmanager
def provider_timer(channel: str, sender: object) -> Iterator[None]:
    """Time one provider call, labelled by channel and the sender's ``provider`` name."""
    started = time.perf_counter()
    try:
        yield
    finally:
        provider = str(getattr(sender, "provider", type(sender).__name__))
        PROVIDER_SECONDS.labels(channel, provider).observe(time.perf_counter() - started)


class DatabaseCollector(Collector):
    """Gauges read from the database (``engine.store.backlog``) and the broker when scraped."""

    def __init__(self, db: Database, broker_url: str | None = None, cache_seconds: float = 1.0):
        self.db = db
        self.broker_url = broker_url
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.cache_seconds:
                self._cached = (time.monotonic(), self._read())
            return list(self._cached[1])

    def _read(self) -> list[GaugeMetricFamily]:
        now = datetime.now(UTC)
        active = GaugeMetricFamily(
            "journey_runs_active", "Active runs by journey and step", labels=["journey", "step"]
        )
        with self.db.sessions() as session:
            for journey, step, count in session.execute(
                select(Run.journey_id, Run.step, func.count())
                .where(Run.status == "active")
                .group_by(Run.journey_id, Run.step)
            ):
                active.add_metric([journey, step or ""], count)
            behind = backlog(session, now)
        families = [
            active,
            GaugeMetricFamily(
                "journey_timer_lag_seconds",
                "Now minus the oldest due timer",
                value=behind.timer_lag_seconds,
            ),
            GaugeMetricFamily(
                "journey_outbox_backlog", "Messages due and not sent", value=behind.outbox_backlog
            ),
            GaugeMetricFamily(
                "journey_dead_letters", "Dead letters not replayed", value=behind.dead_letters
            ),
        ]
        depths = queue_depths(self.broker_url)
        if depths is not None:
            depth = GaugeMetricFamily(
                "journey_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"]
            )
            for queue, size in sorted(depths.items()):
                depth.add_metric([queue], size)
            families.append(depth)
        return families


def exposition(collector: DatabaseCollector | None = None) -> bytes:
    """The text a scrape gets: this process's counters (or every process's, in
    multiprocess mode), plus the database gauges."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    if collector is None:
        return bytes(generate_latest(registry))
    extra = CollectorRegistry()
    extra.register(collector)
    return bytes(generate_latest(registry)) + bytes(generate_latest(extra))


def serve_in_thread(port: int, render: Callable[[], bytes]) -> Any:
    """An HTTP server answering ``/metrics`` on ``port`` from a thread (workers, scheduler)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes are not news

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="journey-metrics", daemon=True).start()
    return server
