"""Properties: a duplicated event changes nothing, and replaying a stream gives the same trace."""

from __future__ import annotations

import itertools
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.event_files import EventFile
from engine.project import compile_project
from engine.simulate import Simulation

ROOT = Path(__file__).resolve().parents[2]
PROJECT = compile_project(ROOT / "journeys")
START = datetime(2026, 3, 1, tzinfo=UTC)
NAMES = ["Signed Up", "Product Added", "Checkout Started", "Order Completed", "Product Viewed"]


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    users = [f"u{i}" for i in range(draw(st.integers(1, 4)))]
    lines: list[dict[str, Any]] = []
    for user in users:
        traits = {
            "phone": "+8613800000000",
            "email": f"{user}@example.com",
            "locale": draw(st.sampled_from(["zh-CN", "en"])),
            "subscriptions": {"sms": draw(st.booleans())},
            "vip": draw(st.booleans()),
        }
        if draw(st.booleans()):
            traits["push_token"] = "tok"
        lines.append(
            {
                "type": "identify",
                "userId": user,
                "traits": traits,
                "timestamp": START.isoformat(),
                "messageId": f"id-{user}",
            }
        )
    count = draw(st.integers(1, 25))
    minutes = sorted(draw(st.lists(st.integers(0, 60 * 24 * 20), min_size=count, max_size=count)))
    # Some events come from an anonymous visitor, who may be identified as u0 at some point.
    visitors = ["v1"] if draw(st.booleans()) else []
    if visitors:
        minute = draw(st.integers(0, 60 * 24 * 20))
        lines.append(
            {
                "type": "identify",
                "userId": users[0],
                "anonymousId": "v1",
                "traits": {"locale": "zh-CN"},
                "timestamp": (START + timedelta(minutes=minute)).isoformat(),
                "messageId": "link-v1",
            }
        )
    for n, minute in enumerate(minutes):
        who = draw(st.sampled_from([*users, *visitors]))
        ids = {"anonymousId": who} if who in visitors else {"userId": who}
        lines.append(
            {
                "type": "track",
                "event": draw(st.sampled_from(NAMES)),
                **ids,
                "properties": {
                    "category": draw(st.sampled_from(["electronics", "beauty", "books"]))
                },
                "timestamp": (START + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z"),
                "messageId": f"m{n}",
            }
        )
    if draw(st.booleans()):  # shuffle some: the file need not be in time order
        lines = draw(st.permutations(lines))
    return lines


def simulate(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines))
        trace: list[dict[str, Any]] = []
        simulation = Simulation(PROJECT, trace.append)
        stream = EventFile(path)
        simulation.run(stream)
        assert stream.errors == []
        if stream.last is not None:
            simulation.fire_due(stream.last + timedelta(days=30))
        return trace


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(lines=streams(), data=st.data())
def test_a_duplicate_event_changes_nothing(
    lines: list[dict[str, Any]], data: st.DataObject
) -> None:
    original = simulate(lines)
    # A re-delivery: the copy comes after the original in the file (the first one wins).
    index = data.draw(st.integers(0, len(lines) - 1))
    position = data.draw(st.integers(index + 1, len(lines)))
    with_duplicate = [*lines[:position], dict(lines[index]), *lines[position:]]
    assert simulate(with_duplicate) == original


@SETTINGS
@given(lines=streams())
def test_replaying_a_stream_gives_the_same_trace(lines: list[dict[str, Any]]) -> None:
    first = simulate(lines)
    assert simulate(lines) == first
    assert all(a["at"] <= b["at"] for a, b in itertools.pairwise(first))
