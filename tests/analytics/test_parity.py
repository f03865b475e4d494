"""One report, whatever its source: the live tables and a simulated stream agree."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from engine.analytics.counters import CounterStats
from engine.analytics.database import DatabaseStats
from engine.analytics.report import build_report
from engine.analytics.shape import journey_shape
from engine.analytics.tally import SimulationStats
from engine.event_files import EventFile
from engine.project import compile_project
from engine.simulate import Simulation
from engine.store.database import Database
from engine.store.stat_counters import fold
from tests.live.test_parity import EVENTS, ROOT, lived


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """What both sources know alike (the live side also has delivery reports, none here)."""
    return {k: v for k, v in report.items() if k not in ("at", "versions")}


def test_the_database_and_a_simulation_give_the_same_reports(db: Database) -> None:
    project = compile_project(ROOT / "journeys")
    watcher = SimulationStats(project)
    simulation = Simulation(project, lambda line: None, observer=watcher)
    stream = EventFile(EVENTS)
    simulation.run(stream)
    assert stream.last is not None
    end = stream.last + timedelta(days=30)
    simulation.fire_due(end)
    memory = watcher.finish(simulation.users.values(), end)

    lived(db)
    simulated, live, counted, folded = {}, {}, {}, {}
    with db.transaction() as session:
        for journey in project.journeys.values():
            shape = journey_shape(journey)
            simulated[journey.id] = build_report(shape, memory, end, version=journey.version)
            live[journey.id] = build_report(
                shape, DatabaseStats(session), end, version=journey.version
            )
            counted[journey.id] = build_report(
                shape, CounterStats(session), end, version=journey.version
            )
    assert fold(db) > 0
    with db.transaction() as session:
        for journey in project.journeys.values():
            folded[journey.id] = build_report(
                journey_shape(journey), CounterStats(session), end, version=journey.version
            )
        assert session.scalar(text("SELECT COUNT(*) FROM stat_deltas")) == 0
    for journey_id, report in live.items():
        # The counters the database keeps, before and after folding, say what a scan says.
        assert counted[journey_id].as_json() == report.as_json(), journey_id
        assert folded[journey_id].as_json() == report.as_json(), journey_id
    for journey_id, report in simulated.items():
        theirs = live[journey_id].as_json()["steps"]
        for mine, their in zip(report.as_json()["steps"], theirs, strict=True):
            assert mine == their  # step by step, for a readable difference
        assert comparable(report.as_json()) == comparable(live[journey_id].as_json()), journey_id
    cart = simulated["cart_abandon"]
    assert cart.entered == 8 and cart.conversions.converted == 4
    assert {c.channel: c.first_touch for c in cart.attribution.channels} == {"push": 3, "sms": 0}
    assert sum(s.messages.sent for s in simulated["welcome_series"].steps) == 11
