"""Property: on any event stream, the live engine decides what `journey simulate` decides."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings

from engine.store.database import Database
from tests.engine.test_replay_properties import streams
from tests.live.test_parity import lived, simulated


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(lines=streams())
def test_live_engine_and_simulate_agree_on_random_streams(lines: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.jsonl"
        events.write_bytes(b"\n".join(orjson.dumps(line) for line in lines))
        db = Database(f"sqlite:///{tmp}/engine.db")
        try:
            assert lived(db, events) == simulated(events)
        finally:
            db.dispose()
