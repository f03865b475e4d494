"""The Grafana dashboard in docs/ reads only the engine's metric names, and loads."""

from __future__ import annotations

import json
import re
from pathlib import Path

BOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "journey-engine.json"
METRICS = {
    "journey_events_total",
    "journey_inputs_applied_total",
    "journey_messages_total",
    "journey_provider_seconds_bucket",
    "journey_runs_active",
    "journey_queue_depth",
    "journey_timer_lag_seconds",
    "journey_outbox_backlog",
    "journey_dead_letters",
}


def test_every_panel_queries_known_metrics_and_all_are_shown() -> None:
    board = json.loads(BOARD.read_text("utf-8"))
    used = set()
    for panel in board["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bjourney_[a-z_]+", target["expr"]))
            assert names and names <= METRICS, (panel["title"], names)
            used |= names
    assert used == METRICS
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and board["uid"] == "journey-engine"
