"""Messaging policies: consent, address, frequency caps and quiet hours (format section 6).

Each policy is a small pure decision, applied in a fixed order before every send:
subscription, address, frequency caps, quiet hours. The first that objects
decides; a message that passes them all is allowed, possibly deferred to the end
of the user's quiet hours.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine import spec
from engine.channels import ChannelSpec
from engine.durations import next_local_time
from engine.values import value

UNSUBSCRIBED = "unsubscribed"
NO_ADDRESS = "no_address"
FREQUENCY_CAP = "frequency_cap"
QUIET_HOURS = "quiet_hours"
#: After these, a send falls back to its next channel (format sections 6 and 9).
FALLBACK_REASONS = frozenset({UNSUBSCRIBED, NO_ADDRESS})


@value
class Allow(NamedTuple):
    """Send at ``at`` (now, or the end of quiet hours when deferred)."""

    at: datetime
    deferred: bool = False


@value
class Suppress(NamedTuple):
    reason: str


Decision = Allow | Suppress
_REFUSALS = {
    reason: Suppress(reason) for reason in (UNSUBSCRIBED, NO_ADDRESS, FREQUENCY_CAP, QUIET_HOURS)
}


@value
class SentMessage(NamedTuple):
    """A message that counts toward caps: sent, in flight, or deferred to ``at``."""

    channel: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Cap:
    channel: str
    limit: int
    per: timedelta


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    channels: frozenset[str] | None
    defer: bool

    def applies_to(self, channel: str) -> bool:
        return self.start != self.end and (self.channels is None or channel in self.channels)

    def contains(self, local: time) -> bool:
        """``[start, end)``, wrapping midnight when start > end."""
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    # tzdata raises OSError subclasses for names that are directories ("Asia") or too long.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@dataclass(frozen=True, slots=True)
class CompiledPolicies:
    """The policies file, compiled; the defaults apply when there is no file."""

    timezone: ZoneInfo
    quiet_hours: QuietHours | None = None
    caps: tuple[Cap, ...] = ()
    opt_in_channels: frozenset[str] = frozenset()
    _horizon: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        horizon = max((cap.per for cap in self.caps), default=timedelta(0))
        object.__setattr__(self, "_horizon", horizon)

    @classmethod
    def from_spec(cls, model: spec.Policies) -> CompiledPolicies:
        quiet = model.quiet_hours
        return cls(
            timezone=ZoneInfo(model.timezone),
            quiet_hours=QuietHours(
                quiet.start,
                quiet.end,
                frozenset(quiet.channels) if quiet.channels is not None else None,
                quiet.action == "defer",
            )
            if quiet
            else None,
            caps=tuple(Cap(c.channel, c.limit, c.per) for c in model.frequency_caps),
            opt_in_channels=frozenset(model.opt_in_channels),
        )

    @property
    def cap_horizon(self) -> timedelta:
        """How far back sent messages matter: the longest cap window (zero without caps)."""
        return self._horizon

    def zone_for(self, profile: Mapping[str, Any]) -> ZoneInfo:
        """The profile's ``timezone`` trait when it names a real zone, else the default."""
        name = profile.get("timezone")
        zone = _zone(name) if isinstance(name, str) and name else None
        return zone or self.timezone

    def consent(self, channel: ChannelSpec, profile: Mapping[str, Any]) -> Suppress | None:
        """Steps 1 and 2: subscription, then address."""
        subscriptions = profile.get("subscriptions")
        subscribed = subscriptions.get(channel.name) if isinstance(subscriptions, dict) else None
        if subscribed is False or (channel.name in self.opt_in_channels and subscribed is not True):
            return _REFUSALS[UNSUBSCRIBED]
        address = profile.get(channel.address_trait)
        if address is None or address == "" or isinstance(address, dict | list):
            return _REFUSALS[NO_ADDRESS]
        return None

    def decide(
        self,
        channel: ChannelSpec,
        profile: Mapping[str, Any],
        now: datetime,
        sent: Collection[SentMessage],
        *,
        ignore_frequency_cap: bool = False,
    ) -> Decision:
        """Apply the whole chain for one attempt on ``channel`` at ``now``."""
        refused = self.consent(channel, profile)
        if refused:
            return refused
        at, deferred = now, False
        quiet = self.quiet_hours
        in_quiet = False
        if quiet and quiet.applies_to(channel.name):
            zone = self.zone_for(profile)
            in_quiet = quiet.contains(now.astimezone(zone).time())
            if in_quiet and quiet.defer:
                at, deferred = next_local_time(now, quiet.end, zone), True
        if not ignore_frequency_cap and self.capped(channel.name, at, sent):
            return _REFUSALS[FREQUENCY_CAP]
        if in_quiet and not deferred:
            return _REFUSALS[QUIET_HOURS]
        return Allow(at, deferred)

    def capped(self, channel: str, at: datetime, sent: Collection[SentMessage]) -> bool:
        """Whether one more message at ``at`` would break any rolling window.

        Windows are ``(t - per, t]``. Deferred messages may already sit in the
        future, so every window that would hold the new message is checked, not
        only the one ending at ``at``.
        """
        for cap in self.caps:
            if len(sent) < cap.limit:
                continue  # even every message counting and this one fit
            if cap.channel != channel and cap.channel != "any":
                continue
            every_channel = cap.channel == "any"
            low, high = at - cap.per, at + cap.per  # only these can share a window with it
            times = [
                m.at for m in sent if low < m.at < high and (every_channel or m.channel == channel)
            ]
            if len(times) < cap.limit:
                continue  # even all of them and this one fit
            times.sort()
            for end in [at, *(t for t in times if t > at)]:
                in_window = bisect_right(times, end) - bisect_right(times, end - cap.per) + 1
                if in_window > cap.limit:
                    return True
        return False
