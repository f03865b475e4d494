"""Messaging policies: consent, address, frequency caps and quiet hours (format section 6).

Each policy is a small pure decision, applied in a fixed order before every send:
subscription, address, frequency caps, quiet hours. The first that objects
decides; a message that passes them all is allowed, possibly deferred to the end
of the user's quiet hours.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Collection, ItemsView, Iterator, Mapping, ValuesView
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache, partial
from itertools import compress
from operator import itemgetter
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


class SentSlots(Collection[SentMessage]):
    """A user's messages that count toward caps, by message id in the order they were
    taken (the mapping methods are a dict's), their times also kept sorted per channel
    and for all channels: a cap is then checked on the few messages next to a new one,
    not on every message of the window (busy users hold hundreds)."""

    __slots__ = ("_by_id", "_times")

    def __init__(self, slots: Mapping[str, SentMessage] | None = None) -> None:
        self._by_id: dict[str, SentMessage] = {}
        #: Channel -> its messages' times, sorted; None -> every channel's. Empty until a
        #: first message: most users never get one.
        self._times: dict[str | None, list[datetime]] = {}
        if slots:
            self.update(slots)

    def times(self, channel: str | None) -> list[datetime]:
        """The sorted times of ``channel``'s messages (None: of every channel). Read only."""
        return self._times.get(channel, [])

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[SentMessage]:
        return iter(self._by_id.values())

    def __contains__(self, slot: object) -> bool:
        return slot in self._by_id.values()

    def __getitem__(self, message_id: str) -> SentMessage:
        return self._by_id[message_id]

    def __setitem__(self, message_id: str, slot: SentMessage) -> None:
        old = self._by_id.get(message_id)
        if old is not None:
            self._forget(old)
        self._by_id[message_id] = slot
        insort(self._times.setdefault(None, []), slot.at)
        insort(self._times.setdefault(slot.channel, []), slot.at)

    def __delitem__(self, message_id: str) -> None:
        self._forget(self._by_id.pop(message_id))

    def pop(self, message_id: str, default: SentMessage | None = None) -> SentMessage | None:
        slot = self._by_id.pop(message_id, None)
        if slot is None:
            return default
        self._forget(slot)
        return slot

    def _forget(self, slot: SentMessage) -> None:
        for times in (self._times[None], self._times[slot.channel]):
            del times[bisect_left(times, slot.at)]

    def update(self, other: Mapping[str, SentMessage] | SentSlots) -> None:
        for message_id, slot in other.items():
            self[message_id] = slot

    def items(self) -> ItemsView[str, SentMessage]:
        return self._by_id.items()

    def values(self) -> ValuesView[SentMessage]:
        return self._by_id.values()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SentSlots):
            return self._by_id == other._by_id
        return isinstance(other, dict) and self._by_id == other

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"SentSlots({self._by_id!r})"


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


_CHANNEL, _AT = itemgetter(0), itemgetter(1)  # of a SentMessage, read in C


def _sorted_times(sent: Collection[SentMessage], channel: str | None) -> list[datetime]:
    """What :meth:`SentSlots.times` gives, for messages held some other way."""
    if channel is None:
        return sorted(map(_AT, sent))
    return sorted(compress(map(_AT, sent), map(channel.__eq__, map(_CHANNEL, sent))))


def _crowded(times: list[datetime], at: datetime, limit: int, per: timedelta) -> bool:
    """Whether some window ``(end - per, end]`` would hold a message at ``at`` and
    ``limit`` others, at the sorted ``times``: more than ``limit`` in all.

    It would when ``limit`` of the times lie, with ``at``, within less than ``per`` of
    one another (the window ends at the latest of them). The closest such times are
    neighbours in ``times``, next to ``at``: only those runs need looking at.
    """
    if limit <= 0:
        return True  # the message alone breaks it
    count = len(times)
    if count < limit:
        return False
    place = bisect_left(times, at)
    for first in range(max(0, place - limit), min(place, count - limit) + 1):
        low, high = times[first], times[first + limit - 1]
        if (high if high > at else at) - (low if low < at else at) < per:
            return True
    return False


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
        times = sent.times if isinstance(sent, SentSlots) else partial(_sorted_times, sent)
        for cap in self.caps:
            if len(sent) < cap.limit:
                continue  # even every message counting and this one fit
            if cap.channel == "any":
                if _crowded(times(None), at, cap.limit, cap.per):
                    return True
            elif cap.channel == channel and _crowded(times(channel), at, cap.limit, cap.per):
                return True
        return False
