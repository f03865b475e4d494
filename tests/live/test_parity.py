"""The live engine and `journey simulate` make the same decisions on the same events.

The example stream is replayed into the live engine with a clock that steps through
every event and every due timer; the messages and run outcomes must equal the trace
of `journey simulate`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from engine.event_files import EventFile
from engine.identity import anonymous_key, display_id, user_key
from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree, compile_project
from engine.simulate import Simulation
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.schema import Message, Run, StoredEvent
from tests.live.clock import Clock

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "examples" / "events.jsonl"


Outcome = tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]


def simulated(events_file: Path = EVENTS) -> Outcome:
    """Messages and run facts from `journey simulate` on ``events_file``."""
    trace: list[dict[str, Any]] = []
    stream = EventFile(events_file)
    simulation = Simulation(compile_project(ROOT / "journeys"), trace.append)
    simulation.run(stream)
    assert stream.last is not None
    simulation.fire_due(stream.last + timedelta(days=30))
    identities = simulation.book.identities

    def owner(user_id: str) -> str:
        # A trace line names the id of its moment; the store moves an anonymous id's
        # history to the user it was linked to. Compare by the final owner.
        for key in (user_key(user_id), anonymous_key(user_id)):
            if identities.owner(key) != key:
                return display_id(identities.owner(key))
        return user_id

    messages = Counter(
        (
            owner(t["user_id"]),
            t["journey"],
            t["step"],
            t["channel"],
            t["status"],
            t["reason"] if t["status"] == "suppressed" else None,
        )
        for t in trace
        if t["type"] == "message"
    )
    facts = Counter(
        (owner(t["user_id"]), t["journey"], t["type"]) for t in trace if t["type"] != "message"
    )
    return messages, facts


def lived(db: Database, events_file: Path = EVENTS) -> Outcome:
    """The same from the live engine, fed the file's events one by one at their times."""
    events = list(EventFile(events_file))
    clock = Clock(events[0].timestamp)
    deploy(db, SourceTree.from_directory(ROOT / "journeys"), now=clock())
    live = LiveEngine(db, clock=clock)
    ingest = Ingestor(db)
    raw: dict[str, Any] = {}  # the payloads as sent, by messageId (the first one wins)
    for line in events_file.read_bytes().splitlines():
        item = orjson.loads(line)
        raw.setdefault(item.get("messageId"), item)

    def advance_to(moment: datetime) -> None:
        while True:
            due = [t for t in (live.next_timer(), live.next_message()) if t and t <= moment]
            if not due:
                break
            clock.now = max(clock.now, min(due))
            apply_until_idle(live)
        clock.now = moment
        apply_until_idle(live)

    for event in events:
        advance_to(event.timestamp)
        ingest.ingest([raw[event.message_id]], now=event.timestamp)
        apply_until_idle(live)
    advance_to(events[-1].timestamp + timedelta(days=30))
    with db.transaction() as session:
        assert set(session.scalars(select(StoredEvent.status))) == {"processed"}
        rows = session.execute(
            select(
                Message.user_key,
                Message.journey_id,
                Message.step,
                Message.channel,
                Message.status,
                Message.reason,
            )
        ).all()
        runs = session.execute(
            select(Run.user_key, Run.journey_id, Run.status, Run.converted_at)
        ).all()
    messages = Counter(
        (
            display_id(key),
            journey,
            step,
            channel,
            status,
            reason if status == "suppressed" else None,
        )
        for key, journey, step, channel, status, reason in rows
        if status != "cancelled"
    )
    facts: Counter[tuple[Any, ...]] = Counter()
    for key, journey, status, converted_at in runs:
        user = display_id(key)
        facts[(user, journey, "entered")] += 1
        if status in ("completed", "exited"):
            facts[(user, journey, status)] += 1
        if converted_at is not None:
            facts[(user, journey, "converted")] += 1
    return messages, facts


def test_live_engine_decides_like_simulate(db: Database) -> None:
    sim_messages, sim_facts = simulated()
    live_messages, live_facts = lived(db)
    assert sum(sim_messages.values()) > 30  # the example stream sends a fair amount
    assert live_messages == sim_messages
    assert live_facts == sim_facts
