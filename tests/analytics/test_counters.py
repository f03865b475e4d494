"""The journey counters the database keeps say what a scan of runs and messages says,
whoever changed them: the engine, a stop, an erasure, a provider's report, a hand-written
UPDATE; and a database upgraded with history in it counts that history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from engine.analytics.counters import CounterStats
from engine.analytics.database import DatabaseStats
from engine.analytics.deployed import ALL, journey_report
from engine.analytics.report import build_report
from engine.analytics.shape import journey_shape
from engine.live.engine import apply_until_idle
from engine.store.database import Database
from engine.store.deployments import DeployedCatalog
from engine.store.ingest import Ingestor
from engine.store.lifecycle import apply_journey_state
from engine.store.migrate import current_revision, downgrade, upgrade
from engine.store.privacy import forget
from engine.store.retention import purge
from engine.store.stat_counters import fold
from tests.live.clock import Clock
from tests.live.test_privacy import mid_journey, setup_engine


def reports(db: Database, clock: Clock) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every deployed journey's report over all its versions: from the counters, and
    from a scan of the tables."""
    counted, scanned = {}, {}
    with db.transaction() as session:
        catalog = DeployedCatalog(db)
        catalog.refresh(session)
        for journey in catalog.current.journeys.values():
            shape = journey_shape(journey)
            counted[journey.id] = build_report(shape, CounterStats(session), clock()).as_json()
            scanned[journey.id] = build_report(shape, DatabaseStats(session), clock()).as_json()
    return counted, scanned


def assert_counted(db: Database, clock: Clock) -> dict[str, Any]:
    counted, scanned = reports(db, clock)
    for journey_id, report in scanned.items():
        assert counted[journey_id] == report, journey_id
    return counted


def some_traffic(db: Database, clock: Clock) -> None:
    live, _ = setup_engine(db, clock)
    mid_journey(db, live, clock)
    ingest = Ingestor(db)
    for i in range(6):
        user = f"u{i}"
        ingest.ingest(
            [
                {"type": "identify", "userId": user, "messageId": f"{user}-id",
                 "traits": {"email": f"{user}@example.com", "phone": f"+861390000000{i}",
                            "subscriptions": {"sms": True, "email": True}}},
                {"type": "track", "userId": user, "event": "Signed Up", "messageId": f"{user}-s"},
                {"type": "track", "userId": user, "event": "Product Added",
                 "properties": {"product_id": "p1", "price": 99}, "messageId": f"{user}-a"},
            ],
            now=clock(),
        )  # fmt: skip
    apply_until_idle(live)
    for hours in (1, 2, 26, 50):
        clock.now += timedelta(hours=hours)
        apply_until_idle(live)
        if hours == 2:  # half of them buy: conversions, with touches before them
            ingest.ingest(
                [
                    {"type": "track", "userId": f"u{i}", "event": "Order Completed",
                     "properties": {"order_id": f"o{i}", "revenue": 99}, "messageId": f"o{i}"}
                    for i in range(3)
                ],
                now=clock(),
            )  # fmt: skip
            apply_until_idle(live)


def test_every_writer_is_counted(db: Database, clock: Clock) -> None:
    some_traffic(db, clock)
    first = assert_counted(db, clock)
    assert first["welcome_series"]["entered"] >= 7
    assert any(report["conversions"]["converted"] for report in first.values())

    with db.transaction() as session:
        forget(session, "li", clock())
    assert_counted(db, clock)
    assert apply_journey_state(db, "welcome_series", "stopped", "ops") is not None
    assert_counted(db, clock)
    with db.transaction() as session:  # a provider's report, written by hand
        session.execute(text("UPDATE messages SET status = 'delivered' WHERE status = 'sent'"))
    after = assert_counted(db, clock)
    assert any(
        step["messages"]["delivered"] for report in after.values() for step in report["steps"]
    )

    assert fold(db) > 0
    folded = assert_counted(db, clock)
    assert folded == after
    # Retention takes payloads and contents, never counts; a row deleted is not uncounted.
    purge(db, clock() + timedelta(days=400), timedelta(days=1))
    with db.transaction() as session:
        session.execute(text("DELETE FROM messages"))
    counted, _ = reports(db, clock)
    assert counted == after


def test_an_upgrade_counts_the_history_already_there(db: Database, clock: Clock) -> None:
    some_traffic(db, clock)
    before = assert_counted(db, clock)
    downgrade(db.engine, "0009")
    upgrade(db.engine)
    assert current_revision(db.engine) == "0010"
    assert assert_counted(db, clock) == before
    with db.transaction() as session:  # every version together, through the report API
        catalog = DeployedCatalog(db)
        whole = journey_report(session, catalog, "welcome_series", clock(), ALL).as_json()
        recounted = journey_report(
            session, catalog, "welcome_series", clock(), ALL, recount=True
        ).as_json()
    assert whole == recounted


def metric_totals(name: str) -> dict[tuple[str, ...], float]:
    """This process's samples of a Prometheus counter, by label values."""
    from prometheus_client import REGISTRY

    found: dict[tuple[str, ...], float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sample.labels.values())] = sample.value
    return found


def grown(before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]) -> Any:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def test_prometheus_counts_what_the_engine_did(db: Database, clock: Clock) -> None:
    names = (
        "journey_inputs_applied_total",
        "journey_messages_total",
        "journey_provider_seconds_count",
    )
    before = {name: metric_totals(name) for name in names}
    some_traffic(db, clock)
    after = {name: grown(before[name], metric_totals(name)) for name in names}
    with db.transaction() as session:
        events = session.scalar(text("SELECT COUNT(*) FROM events WHERE status = 'processed'"))
        by_outcome = {
            (channel, status, reason or ""): n
            for channel, status, reason, n in session.execute(
                text(
                    "SELECT channel, status, CASE WHEN status = 'suppressed' THEN reason END, "
                    "COUNT(*) FROM messages WHERE status IN ('sent', 'suppressed', 'failed') "
                    "GROUP BY 1, 2, 3"
                )
            )
        }
    assert after["journey_inputs_applied_total"][("event",)] == events
    assert after["journey_inputs_applied_total"][("timer",)] > 0
    assert after["journey_messages_total"] == by_outcome
    assert any(status == "suppressed" for _, status, _ in by_outcome)
    sent = sum(n for (channel, status, _), n in by_outcome.items() if status == "sent")
    assert sum(after["journey_provider_seconds_count"].values()) == sent
