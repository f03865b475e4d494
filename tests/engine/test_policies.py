"""engine.policies: consent, address, frequency caps and quiet hours, in that order."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import spec
from engine.channels import ChannelSpec, get_channel
from engine.policies import (
    FREQUENCY_CAP,
    NO_ADDRESS,
    QUIET_HOURS,
    UNSUBSCRIBED,
    Allow,
    Cap,
    CompiledPolicies,
    QuietHours,
    SentMessage,
    SentSlots,
    Suppress,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
PROFILE: dict[str, Any] = {"phone": "+8613800000000", "email": "u@example.com", "push_token": "t"}


def policies(**raw: Any) -> CompiledPolicies:
    return CompiledPolicies.from_spec(spec.Policies.model_validate(raw))


def channel(name: str) -> ChannelSpec:
    found = get_channel(name)
    assert found is not None
    return found


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


SMS, EMAIL, PUSH = channel("sms"), channel("email"), channel("push")
# 12:00 in Shanghai: outside the usual quiet hours
NOON_SH = utc(2026, 3, 1, 4, 0)
# 22:00 in Shanghai: inside 21:00-08:00
NIGHT_SH = utc(2026, 3, 1, 14, 0)
# 08:00 the next morning in Shanghai
MORNING_SH = utc(2026, 3, 2, 0, 0)

QUIET = {"start": "21:00", "end": "08:00"}


def test_from_spec_compiles_every_field() -> None:
    compiled = policies(
        timezone="Asia/Shanghai",
        quiet_hours={**QUIET, "channels": ["sms"], "action": "skip"},
        frequency_caps=[{"channel": "sms", "limit": 1, "per": "1d"}],
        opt_in_channels=["sms"],
    )
    assert compiled.timezone == SHANGHAI
    assert compiled.quiet_hours == QuietHours(time(21), time(8), frozenset({"sms"}), False)
    assert [(c.channel, c.limit, c.per) for c in compiled.caps] == [("sms", 1, timedelta(days=1))]
    assert compiled.opt_in_channels == frozenset({"sms"})


def test_defaults_allow_everything_now() -> None:
    assert policies().decide(SMS, PROFILE, NOON_SH, []) == Allow(NOON_SH, False)


# --- consent -------------------------------------------------------------------------------


def test_unsubscribed_channel_is_suppressed() -> None:
    profile = {**PROFILE, "subscriptions": {"sms": False}}
    assert policies().consent(SMS, profile) == Suppress(UNSUBSCRIBED)
    # other channels are unaffected
    assert policies().consent(EMAIL, profile) is None


@pytest.mark.parametrize(
    ("subscriptions", "expected"),
    [
        (None, Suppress(UNSUBSCRIBED)),
        ({}, Suppress(UNSUBSCRIBED)),
        ({"sms": "yes"}, Suppress(UNSUBSCRIBED)),
        ({"sms": 1}, Suppress(UNSUBSCRIBED)),
        ({"sms": True}, None),
    ],
)
def test_opt_in_channel_requires_true(subscriptions: Any, expected: Suppress | None) -> None:
    profile = dict(PROFILE)
    if subscriptions is not None:
        profile["subscriptions"] = subscriptions
    assert policies(opt_in_channels=["sms"]).consent(SMS, profile) == expected


def test_non_opt_in_channel_needs_no_subscription() -> None:
    assert policies(opt_in_channels=["sms"]).consent(EMAIL, PROFILE) is None


@pytest.mark.parametrize("address", [None, "", {}, []])
def test_missing_or_empty_address(address: Any) -> None:
    profile = {k: v for k, v in PROFILE.items() if k != "phone"}
    if address is not None:
        profile["phone"] = address
    assert policies().consent(SMS, profile) == Suppress(NO_ADDRESS)


# --- time zones ----------------------------------------------------------------------------


def test_profile_timezone_wins() -> None:
    assert policies(timezone="Asia/Shanghai").zone_for({"timezone": "America/New_York"}) == (
        NEW_YORK
    )


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", 8, None, "../../etc/passwd"])
def test_invalid_profile_timezone_falls_back_to_default(name: Any) -> None:
    assert policies(timezone="Asia/Shanghai").zone_for({"timezone": name}) == SHANGHAI


@pytest.mark.parametrize(
    "name", ["America", "Asia", "x" * 300], ids=["America", "Asia", "overlong"]
)
def test_directory_or_overlong_timezone_falls_back(name: str) -> None:
    assert policies(timezone="Asia/Shanghai").zone_for({"timezone": name}) == SHANGHAI


# --- quiet hours ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "local", "inside"),
    [
        (time(21), time(8), time(21, 0), True),
        (time(21), time(8), time(20, 59), False),
        (time(21), time(8), time(0, 0), True),
        (time(21), time(8), time(7, 59), True),
        (time(21), time(8), time(8, 0), False),
        (time(12), time(14), time(12, 0), True),
        (time(12), time(14), time(13, 59), True),
        (time(12), time(14), time(14, 0), False),
        (time(12), time(14), time(11, 59), False),
    ],
)
def test_quiet_hours_are_half_open(start: time, end: time, local: time, inside: bool) -> None:
    assert QuietHours(start, end, None, True).contains(local) is inside


def test_start_equal_end_means_no_quiet_hours() -> None:
    compiled = policies(timezone="Asia/Shanghai", quiet_hours={"start": "21:00", "end": "21:00"})
    assert compiled.decide(SMS, PROFILE, NIGHT_SH, []) == Allow(NIGHT_SH, False)
    assert compiled.decide(SMS, PROFILE, utc(2026, 3, 1, 13, 0), []) == Allow(
        utc(2026, 3, 1, 13, 0), False
    )


def test_defer_moves_to_end_of_quiet_hours() -> None:
    compiled = policies(timezone="Asia/Shanghai", quiet_hours=QUIET)
    assert compiled.decide(SMS, PROFILE, NIGHT_SH, []) == Allow(MORNING_SH, deferred=True)


def test_defer_after_midnight_is_the_same_morning() -> None:
    compiled = policies(timezone="Asia/Shanghai", quiet_hours=QUIET)
    one_am = utc(2026, 3, 1, 17, 0)  # 01:00 on the 2nd in Shanghai
    assert compiled.decide(SMS, PROFILE, one_am, []) == Allow(MORNING_SH, deferred=True)


def test_quiet_hours_use_the_profile_zone() -> None:
    compiled = policies(timezone="Asia/Shanghai", quiet_hours=QUIET)
    profile = {**PROFILE, "timezone": "America/New_York"}
    # 22:00 Shanghai is 09:00 in New York: not quiet there.
    assert compiled.decide(SMS, profile, NIGHT_SH, []) == Allow(NIGHT_SH, False)
    # 23:00 EST -> 08:00 EST next day (13:00 UTC)
    late = datetime(2026, 3, 2, 23, 0, tzinfo=NEW_YORK)
    assert compiled.decide(SMS, profile, late, []) == Allow(utc(2026, 3, 3, 13, 0), True)


def test_quiet_hours_channels_filter() -> None:
    compiled = policies(timezone="Asia/Shanghai", quiet_hours={**QUIET, "channels": ["sms"]})
    assert compiled.decide(EMAIL, PROFILE, NIGHT_SH, []) == Allow(NIGHT_SH, False)
    assert compiled.decide(SMS, PROFILE, NIGHT_SH, []).deferred is True  # type: ignore[union-attr]


def test_quiet_hours_without_channels_apply_to_all() -> None:
    compiled = policies(timezone="Asia/Shanghai", quiet_hours=QUIET)
    assert compiled.decide(EMAIL, PROFILE, NIGHT_SH, []) == Allow(MORNING_SH, True)


def test_skip_action_suppresses() -> None:
    compiled = policies(timezone="Asia/Shanghai", quiet_hours={**QUIET, "action": "skip"})
    assert compiled.decide(SMS, PROFILE, NIGHT_SH, []) == Suppress(QUIET_HOURS)
    assert compiled.decide(SMS, PROFILE, NOON_SH, []) == Allow(NOON_SH, False)


# --- frequency caps ------------------------------------------------------------------------


def capped_sms(limit: int = 1, per: str = "1d", **extra: Any) -> CompiledPolicies:
    return policies(
        timezone="Asia/Shanghai",
        frequency_caps=[{"channel": "sms", "limit": limit, "per": per}],
        **extra,
    )


def test_message_exactly_per_ago_no_longer_counts() -> None:
    sent = [SentMessage("sms", NOON_SH - timedelta(days=1))]
    assert capped_sms().decide(SMS, PROFILE, NOON_SH, sent) == Allow(NOON_SH, False)


def test_message_just_inside_window_counts() -> None:
    sent = [SentMessage("sms", NOON_SH - timedelta(days=1) + timedelta(seconds=1))]
    assert capped_sms().decide(SMS, PROFILE, NOON_SH, sent) == Suppress(FREQUENCY_CAP)


def test_limit_counts_messages() -> None:
    sent = [SentMessage("sms", NOON_SH - timedelta(hours=h)) for h in (1, 2)]
    assert capped_sms(limit=3).decide(SMS, PROFILE, NOON_SH, sent) == Allow(NOON_SH, False)
    assert capped_sms(limit=2).decide(SMS, PROFILE, NOON_SH, sent) == Suppress(FREQUENCY_CAP)


def test_channel_cap_ignores_other_channels() -> None:
    compiled = capped_sms()
    assert compiled.decide(SMS, PROFILE, NOON_SH, [SentMessage("email", NOON_SH)]) == Allow(
        NOON_SH, False
    )
    # and does not apply to sends on other channels
    assert compiled.decide(EMAIL, PROFILE, NOON_SH, [SentMessage("sms", NOON_SH)]) == Allow(
        NOON_SH, False
    )


def test_any_cap_counts_every_channel() -> None:
    compiled = policies(frequency_caps=[{"channel": "any", "limit": 2, "per": "7d"}])
    sent = [
        SentMessage("sms", NOON_SH - timedelta(days=1)),
        SentMessage("push", NOON_SH - timedelta(days=2)),
    ]
    assert compiled.decide(EMAIL, PROFILE, NOON_SH, sent) == Suppress(FREQUENCY_CAP)
    assert compiled.decide(EMAIL, PROFILE, NOON_SH, sent[:1]) == Allow(NOON_SH, False)


def test_ignore_frequency_cap() -> None:
    sent = [SentMessage("sms", NOON_SH - timedelta(minutes=1))]
    decision = capped_sms().decide(SMS, PROFILE, NOON_SH, sent, ignore_frequency_cap=True)
    assert decision == Allow(NOON_SH, False)


def test_two_sends_deferred_to_same_morning_cannot_both_pass_limit_one() -> None:
    compiled = capped_sms(quiet_hours=QUIET)
    first = compiled.decide(SMS, PROFILE, NIGHT_SH, [])
    assert first == Allow(MORNING_SH, True)
    assert isinstance(first, Allow)
    second = compiled.decide(
        SMS, PROFILE, NIGHT_SH + timedelta(minutes=30), [SentMessage("sms", first.at)]
    )
    assert second == Suppress(FREQUENCY_CAP)


def test_future_deferred_message_blocks_an_earlier_send_in_its_window() -> None:
    # a message already deferred to tomorrow 08:00 sits 20h after this noon send
    assert capped_sms().decide(SMS, PROFILE, NOON_SH, [SentMessage("sms", MORNING_SH)]) == (
        Suppress(FREQUENCY_CAP)
    )


def test_caps_are_checked_at_the_deferred_delivery_time() -> None:
    sent = [SentMessage("sms", NIGHT_SH - timedelta(hours=2))]  # 20:00 in Shanghai
    compiled = capped_sms(per="6h", quiet_hours=QUIET)
    # Deferred to 08:00, ten hours after the last message: outside the 6h window.
    assert compiled.decide(SMS, PROFILE, NIGHT_SH, sent) == Allow(MORNING_SH, True)
    # The same history blocks a send that is not deferred.
    assert capped_sms(per="6h").decide(SMS, PROFILE, NIGHT_SH, sent) == Suppress(FREQUENCY_CAP)


# --- order of the chain --------------------------------------------------------------------


def strict() -> CompiledPolicies:
    return policies(
        timezone="Asia/Shanghai",
        quiet_hours={**QUIET, "action": "skip"},
        frequency_caps=[{"channel": "sms", "limit": 0, "per": "1d"}],
    )


def test_unsubscribed_before_no_address() -> None:
    profile = {"subscriptions": {"sms": False}}
    assert strict().decide(SMS, profile, NIGHT_SH, []) == Suppress(UNSUBSCRIBED)


def test_no_address_before_frequency_cap() -> None:
    assert strict().decide(SMS, {"email": "x@y.z"}, NIGHT_SH, []) == Suppress(NO_ADDRESS)


def test_frequency_cap_before_quiet_hours() -> None:
    assert strict().decide(SMS, PROFILE, NIGHT_SH, []) == Suppress(FREQUENCY_CAP)


def test_quiet_hours_last() -> None:
    compiled = strict()
    # email has no cap: only quiet hours object
    assert compiled.decide(EMAIL, PROFILE, NIGHT_SH, []) == Suppress(QUIET_HOURS)
    # ignoring the cap lets quiet hours decide for sms too
    assert compiled.decide(SMS, PROFILE, NIGHT_SH, [], ignore_frequency_cap=True) == Suppress(
        QUIET_HOURS
    )


def capped_by_definition(
    caps: list[Cap], channel: str, at: datetime, sent: list[SentMessage]
) -> bool:
    """Every window ``(end - per, end]`` that would hold the new message, counted one by
    one: the definition the quicker check must agree with."""
    for cap in caps:
        if cap.channel not in (channel, "any"):
            continue
        times = [m.at for m in sent if cap.channel == "any" or m.channel == channel]
        ends = [at, *(t for t in times if at < t < at + cap.per)]
        for end in ends:
            inside = sum(1 for t in times if end - cap.per < t <= end)
            if inside + 1 > cap.limit:
                return True
    return False


@settings(max_examples=1500, deadline=None)
@given(
    caps=st.lists(
        st.builds(
            Cap,
            st.sampled_from(["sms", "push", "any"]),
            st.integers(0, 4),
            st.integers(1, 8).map(lambda hours: timedelta(hours=hours)),
        ),
        max_size=3,
    ),
    channel=st.sampled_from(["sms", "push"]),
    at=st.integers(0, 48 * 4).map(lambda quarter: NOON_SH + timedelta(minutes=15 * quarter)),
    sent=st.lists(
        st.builds(
            SentMessage,
            st.sampled_from(["sms", "push", "email"]),
            st.integers(0, 48 * 4).map(lambda q: NOON_SH + timedelta(minutes=15 * q)),
        ),
        max_size=14,
    ),
)
def test_caps_count_every_window_that_would_hold_the_message(
    caps: list[Cap], channel: str, at: datetime, sent: list[SentMessage]
) -> None:
    # Times on a quarter-hour grid and windows of whole hours: ties at a window's edges
    # and messages at the very time of the new one are common.
    compiled = CompiledPolicies(SHANGHAI, caps=tuple(caps))
    expected = capped_by_definition(caps, channel, at, sent)
    assert compiled.capped(channel, at, sent) is expected
    assert compiled.capped(channel, at, {str(n): m for n, m in enumerate(sent)}.values()) is (
        expected
    )
    # Kept sorted as slots come and go: taken, some given back, some taken again.
    slots = SentSlots({str(n): m for n, m in enumerate(sent)})
    given_back = {str(n): slots.pop(str(n)) for n in range(0, len(sent), 3)}
    slots.update({"spare": SentMessage(channel, at)})
    del slots["spare"]
    slots.update(given_back)
    assert sorted(slots, key=tuple) == sorted(sent, key=tuple)
    assert compiled.capped(channel, at, slots) is expected


def test_sent_slots_are_a_mapping_in_the_order_taken() -> None:
    first, second = SentMessage("sms", NOON_SH), SentMessage("push", NOON_SH - timedelta(hours=1))
    slots = SentSlots({"a": first})
    slots["b"] = second
    slots["a"] = SentMessage("sms", NOON_SH + timedelta(hours=1))  # keeps its place
    assert (
        [key for key, _ in slots.items()] == ["a", "b"] and slots["b"] == second and len(slots) == 2
    )
    assert slots.times(None) == [NOON_SH - timedelta(hours=1), NOON_SH + timedelta(hours=1)]
    assert slots.times("sms") == [NOON_SH + timedelta(hours=1)] and slots.times("email") == []
    assert slots.pop("missing") is None and slots.pop("b") == second
    assert slots.times("push") == [] and slots == {"a": SentMessage("sms", slots["a"].at)}
    with pytest.raises(KeyError):
        del slots["b"]
