"""engine.events: Segment messages validated into Events; errors name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidMessage
from engine.events import Event, parse_message, parse_message_with_models

TS = "2026-03-01T10:00:00Z"
AT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
TRACK: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u42",
    "properties": {"order_id": "o1", "total": 99.5},
    "timestamp": TS,
    "messageId": "m-123",
}


def without(raw: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in keys}


def test_track() -> None:
    event = parse_message(TRACK)
    assert event.type == "track"
    assert event.name == "Order Completed"
    assert event.user_id == "u42"
    assert event.anonymous_id is None
    assert event.message_id == "m-123"
    assert event.timestamp == AT
    assert event.properties == {"order_id": "o1", "total": 99.5}
    assert event.traits == {}


def test_identify() -> None:
    event = parse_message(
        {
            "type": "identify",
            "userId": "u42",
            "anonymousId": "a-9",
            "traits": {"phone": "+86", "subscriptions": {"sms": True}},
            "timestamp": TS,
            "messageId": "m-122",
        }
    )
    assert (event.type, event.user_id, event.anonymous_id) == ("identify", "u42", "a-9")
    assert event.traits == {"phone": "+86", "subscriptions": {"sms": True}}
    assert event.name is None


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_and_screen_carry_name_and_properties(kind: str) -> None:
    event = parse_message(
        {
            "type": kind,
            "anonymousId": "a1",
            "name": "Home",
            "properties": {"path": "/"},
            "timestamp": TS,
            "messageId": "m",
        }
    )
    assert (event.type, event.name, event.anonymous_id) == (kind, "Home", "a1")
    assert event.properties == {"path": "/"}


def test_alias() -> None:
    event = parse_message(
        {"type": "alias", "userId": "u1", "previousId": "a1", "timestamp": TS, "messageId": "m"}
    )
    assert (event.type, event.user_id, event.previous_id) == ("alias", "u1", "a1")


def test_group() -> None:
    event = parse_message(
        {
            "type": "group",
            "userId": "u1",
            "groupId": "g1",
            "traits": {"plan": "pro"},
            "timestamp": TS,
            "messageId": "m",
        }
    )
    assert (event.type, event.user_id, event.traits) == ("group", "u1", {"plan": "pro"})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (without(TRACK, "event"), "event"),
        ({**TRACK, "event": ""}, "event"),
        ({**TRACK, "event": None}, "event"),
        (without(TRACK, "userId"), "userId"),
        ({**TRACK, "userId": None}, "userId"),
        ({**TRACK, "userId": ""}, "userId"),
        ({**TRACK, "timestamp": "yesterday"}, "timestamp"),
        ({**TRACK, "type": "bogus"}, "type"),
        (without(TRACK, "type"), "type"),
        ({**TRACK, "properties": [1, 2]}, "properties"),
        ({**TRACK, "properties": "x"}, "properties"),
        (
            {"type": "alias", "userId": "u1", "timestamp": TS, "messageId": "m"},
            "previousId",
        ),
        (
            {"type": "identify", "userId": "u1", "traits": 5, "timestamp": TS, "messageId": "m"},
            "traits",
        ),
        (without(TRACK, "messageId"), "messageId"),
        (without(TRACK, "timestamp"), "timestamp"),
    ],
)
def test_invalid_message_names_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_message(raw)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")


def test_not_an_object() -> None:
    with pytest.raises(InvalidMessage, match="JSON object"):
        parse_message([TRACK])


def test_numeric_user_id_is_text() -> None:
    event = parse_message({**TRACK, "userId": 42})
    assert event.user_id == "42"


def test_boolean_user_id_is_rejected() -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_message({**TRACK, "userId": True})
    assert info.value.field == "userId"


def test_anonymous_id_alone_is_enough() -> None:
    event = parse_message({**without(TRACK, "userId"), "anonymousId": "a-1"})
    assert (event.user_id, event.anonymous_id) == (None, "a-1")


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-03-01T10:00:00", AT),
        ("2026-03-01T18:00:00+08:00", AT),
        ("2026-03-01T05:00:00-05:00", AT),
        ("2026-03-01T10:00:00.000Z", AT),
    ],
)
def test_timestamps_become_utc(stamp: str, expected: datetime) -> None:
    event = parse_message({**TRACK, "timestamp": stamp})
    assert event.timestamp == expected
    assert event.timestamp.utcoffset() is not None
    assert event.timestamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_defaults_fill_missing_id_and_timestamp() -> None:
    received = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    event = parse_message(
        without(TRACK, "messageId", "timestamp"),
        default_message_id="file:3",
        default_timestamp=received,
    )
    assert (event.message_id, event.timestamp) == ("file:3", received)


def test_defaults_do_not_override_given_values() -> None:
    event = parse_message(
        TRACK, default_message_id="file:3", default_timestamp=datetime(2020, 1, 1, tzinfo=UTC)
    )
    assert (event.message_id, event.timestamp) == ("m-123", AT)


def test_naive_default_timestamp_is_utc() -> None:
    event = parse_message(without(TRACK, "timestamp"), default_timestamp=datetime(2026, 3, 1, 10))
    assert event.timestamp == AT


def test_extra_segment_fields_are_accepted() -> None:
    event = parse_message(
        {
            **TRACK,
            "context": {"ip": "10.0.0.1"},
            "integrations": {"All": True},
            "sentAt": "2026-03-01T10:00:01Z",
            "receivedAt": "2026-03-01T10:00:02Z",
            "version": 2,
        }
    )
    assert event.context == {"ip": "10.0.0.1"}
    assert event.name == "Order Completed"


def test_data_keys_for_track() -> None:
    data = parse_message(TRACK).data()
    assert set(data) == {
        "type",
        "event",
        "name",
        "properties",
        "traits",
        "timestamp",
        "messageId",
        "userId",
        "anonymousId",
        "context",
    }
    assert data["event"] == "Order Completed"
    assert data["properties"]["total"] == 99.5
    assert data["timestamp"] == AT
    assert data["context"] == {}


def test_data_event_is_none_for_page() -> None:
    data = parse_message(
        {"type": "page", "userId": "u1", "name": "Pricing", "timestamp": TS, "messageId": "m"}
    ).data()
    assert data["event"] is None
    assert data["name"] == "Pricing"


def test_identify_traits_fall_back_to_context_traits_as_rudderstack_sends_them() -> None:
    base = {
        "type": "identify",
        "userId": "u1",
        "timestamp": "2026-03-01T00:00:00Z",
        "messageId": "m1",
        "context": {"traits": {"plan": "pro"}},
    }
    assert parse_message(base).traits == {"plan": "pro"}
    assert parse_message({**base, "traits": {"plan": "free"}}).traits == {"plan": "free"}


# -- the shortcut for plain messages agrees with the models -------------------------

_ids = st.one_of(
    st.none(),
    st.sampled_from(["u1", "a-9", "", "x" * 512, "x" * 513, "李伟"]),
    st.integers(-5, 10**20),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
_stamps = st.one_of(
    st.none(),
    st.sampled_from(
        [
            TS,
            "2026-03-01T10:00:00",
            "2026-03-01T10:00:00.5Z",
            "2026-03-01T10:00:00.123456+08:00",
            "2026-03-01T10:00:00.1234567Z",
            "2026-03-01T10:00:00-05:30",
            "2026-03-01T10:00:00+23:59",
            "2026-03-01T10:00:00+24:00",
            "2026-02-29T10:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T10:00:60Z",
            "2026-03-01 10:00:00Z",
            "2026-03-01t10:00:00z",
            "20260301T100000Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "tomorrow",
            "",
        ]
    ),
    st.integers(0, 2_000_000_000),
    st.datetimes(timezones=st.sampled_from([UTC, None])),
)
_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_objects = st.one_of(
    st.just(ABSENT := object()),
    st.none(),
    st.dictionaries(st.text(max_size=6), _values, max_size=4),
    st.dictionaries(st.integers(0, 3), _values, max_size=2),
    st.lists(_values, max_size=2),
    st.text(max_size=3),
)


_FIELDS = {
    "userId": _ids,
    "anonymousId": _ids,
    "messageId": _ids,
    "previousId": _ids,
    "groupId": _ids,
    "timestamp": _stamps,
    "event": st.one_of(st.none(), st.sampled_from(["Go", "", "é" * 513]), st.integers()),
    "name": st.one_of(st.none(), st.sampled_from(["Home", ""]), st.integers()),
    "properties": _objects,
    "traits": _objects,
    "context": _objects | st.just({"traits": {"plan": "pro"}}) | st.just({"traits": 3}),
    "type": st.sampled_from(["track", "identify", "x", ""]) | st.none() | st.integers(),
}
_VALID: dict[str, dict[str, Any]] = {
    "track": {"event": "Go", "properties": {"n": 1}},
    "identify": {"traits": {"plan": "pro"}},
    "page": {"name": "Home", "properties": {}},
    "screen": {"name": "Cart"},
    "group": {"groupId": "g1", "traits": {"size": 3}},
    "alias": {"previousId": "a-9"},
}


@st.composite
def _messages(draw: st.DrawFn) -> dict[Any, Any]:
    """A valid message of each type, then none, one or a few fields changed or dropped."""
    kind = draw(st.sampled_from(sorted(_VALID)))
    raw: dict[Any, Any] = {
        "type": kind,
        "userId": "u1",
        "messageId": "m1",
        "timestamp": TS,
        "context": {"library": {"name": "analytics-python"}},
        **_VALID[kind],
    }
    for key in draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=3, unique=True)):
        value = draw(_FIELDS[key])
        if value is ABSENT or draw(st.integers(0, 5)) == 0:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def _outcome(parse: Any, raw: dict[Any, Any], **defaults: Any) -> object:
    try:
        return parse(raw, **defaults)
    except InvalidMessage as exc:
        return ("invalid", exc.field, str(exc))
    except (OverflowError, ValueError) as exc:
        return (type(exc).__name__,)


@settings(max_examples=1500, deadline=None)
@given(
    raw=_messages(),
    message_id=st.none() | st.just("events.jsonl:7"),
    received=st.none() | st.just(datetime(2026, 3, 1, 12, tzinfo=UTC)),
)
def test_plain_message_shortcut_agrees_with_the_models(
    raw: dict[Any, Any], message_id: str | None, received: datetime | None
) -> None:
    defaults = {"default_message_id": message_id, "default_timestamp": received}
    fast = _outcome(parse_message, raw, **defaults)
    slow = _outcome(parse_message_with_models, raw, **defaults)
    assert fast == slow
    if isinstance(fast, Event):  # the same instant, and the same kind of time zone object
        assert isinstance(slow, Event)
        assert repr(fast.timestamp) == repr(slow.timestamp)


def test_a_plain_timestamp_out_of_range_in_utc_is_refused_as_the_models_refuse_it() -> None:
    raw = {
        "type": "track",
        "event": "e",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": "0001-01-01T00:00:00+14:00",
    }
    with pytest.raises(InvalidMessage) as plain:
        parse_message(raw)
    with pytest.raises(InvalidMessage) as models:
        parse_message_with_models(raw)
    assert str(plain.value) == str(models.value)
