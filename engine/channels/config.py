"""From the settings to senders: which provider delivers each channel, behind its guards.

:func:`build_channels` reads ``JOURNEY_<CHANNEL>_PROVIDER`` for every channel, builds the
chosen provider's sender (a missing or wrong setting is a
:class:`~engine.errors.ConfigurationError` naming it, at start rather than at the first
message), wraps it in a :class:`~engine.channels.guard.GuardedSender` (its account's
circuit breaker and rate limits, in Redis when ``JOURNEY_REDIS_URL`` is set), and
leaves every other channel on the local sink. :class:`ChannelSetup` says which is which,
so ``journey run`` can tell at start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from redis import Redis

from engine.channels import channel_names
from engine.channels.breaker import (
    BreakerPolicy,
    BreakerStore,
    CircuitBreaker,
    MemoryBreakerStore,
    RedisBreakerStore,
)
from engine.channels.guard import GuardedSender
from engine.channels.plugins import ChannelPlugin, ProviderSpec, load_plugins
from engine.channels.providers import aliyun, fcm, smtp, twilio, wecom
from engine.channels.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from engine.channels.rates import Rate, parse_rates
from engine.channels.senders import Sender, SenderRegistry
from engine.channels.settings import ChannelSettings
from engine.errors import ConfigurationError, EngineError

BUILTIN = ChannelPlugin(
    "builtin",
    providers=(
        ProviderSpec("email", "smtp", smtp.from_settings),
        ProviderSpec("sms", "aliyun", aliyun.from_settings),
        ProviderSpec("sms", "twilio", twilio.from_settings),
        ProviderSpec("wecom", "app", wecom.app_from_settings),
        ProviderSpec("wecom", "robot", wecom.robot_from_settings),
        ProviderSpec("push", "fcm", fcm.from_settings),
    ),
)


def env_name(field_name: str) -> str:
    return f"JOURNEY_{field_name.upper()}"


@dataclass(frozen=True)
class ChannelSetup:
    """The senders of every channel, and which provider (if any) each uses."""

    registry: SenderRegistry
    providers: Mapping[str, str] = field(default_factory=dict)
    accounts: Mapping[str, str] = field(default_factory=dict)
    on_sink: tuple[str, ...] = ()
    senders: tuple[Sender, ...] = ()
    redis: Redis | None = None  # the client made from JOURNEY_REDIS_URL, if any

    def describe(self) -> list[str]:
        """One line per channel, for the start-up banner (no secrets)."""
        lines = []
        for channel in sorted({*self.providers, *self.on_sink}):
            if channel in self.providers:
                lines.append(f"{channel}: {self.providers[channel]} ({self.accounts[channel]})")
            else:
                lines.append(
                    f"{channel}: local sink, nothing reaches a person "
                    f"(set {env_name(channel + '_provider')})"
                )
        return lines

    def close(self) -> None:
        """Close the providers' connections (and the Redis client made for them)."""
        for sender in self.senders:
            close = getattr(sender, "close", None)
            if callable(close):
                close()
        if self.redis is not None:
            self.redis.close()


def _providers(plugins: Iterable[ChannelPlugin]) -> dict[str, dict[str, ProviderSpec]]:
    known = set(channel_names())
    table: dict[str, dict[str, ProviderSpec]] = {}
    for plugin in plugins:
        for spec in plugin.providers:
            if spec.channel not in known:
                raise EngineError(
                    f"channel plugin {plugin.name!r}: provider {spec.name!r} is for "
                    f"unknown channel {spec.channel!r}"
                )
            if spec.name in table.setdefault(spec.channel, {}):
                raise EngineError(
                    f"channel plugin {plugin.name!r}: {spec.channel} provider "
                    f"{spec.name!r} is already defined"
                )
            table[spec.channel][spec.name] = spec
    return table


def _choose(
    channel: str, settings: ChannelSettings, specs: Mapping[str, ProviderSpec]
) -> tuple[ProviderSpec, Sender] | None:
    setting = f"{channel}_provider"
    if setting not in type(settings).model_fields:  # a plugin's channel: first one configured
        for spec in specs.values():
            sender = spec.build(settings)
            if sender is not None:
                return spec, sender
        return None
    name = getattr(settings, setting)
    if name is None:
        return None
    if name not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise ConfigurationError(env_name(setting), f"unknown provider {name!r}; known: {known}")
    sender = specs[name].build(settings)
    if sender is None:
        raise ConfigurationError(env_name(setting), f"provider {name!r} is not configured")
    return specs[name], sender


def _rates(channel: str, settings: ChannelSettings, sender: Sender) -> tuple[Rate, ...]:
    setting = f"{channel}_rate_limit"
    text = getattr(settings, setting) if setting in type(settings).model_fields else None
    if text:
        return parse_rates(text)
    return tuple(getattr(sender, "account_rates", ()))


def breaker_policy(settings: ChannelSettings) -> BreakerPolicy:
    cooldown = settings.breaker_cooldown
    return BreakerPolicy(
        threshold=settings.breaker_threshold,
        cooldown=cooldown,
        credential_cooldown=cooldown * 10,
        max_cooldown=max(cooldown * 20, 600.0),
    )


def build_channels(
    settings: ChannelSettings,
    *,
    plugins: Iterable[ChannelPlugin] | None = None,
    redis: Redis | None = None,
    limiter: RateLimiter | None = None,
    breakers: BreakerStore | None = None,
    guard: bool = True,
) -> ChannelSetup:
    """Senders for every channel from ``settings`` (and installed plugins).

    Rate limits and breakers live in ``redis`` (default: ``JOURNEY_REDIS_URL``), else in
    the process; ``limiter``/``breakers`` replace either. ``guard=False`` returns the bare
    provider senders.
    """
    found = load_plugins() if plugins is None else tuple(plugins)
    table = _providers((BUILTIN, *found))
    made: Redis | None = None
    if redis is None and settings.redis_url and (limiter is None or breakers is None):
        redis = made = Redis.from_url(settings.redis_url)
    if limiter is None:
        limiter = RedisRateLimiter(redis) if redis is not None else MemoryRateLimiter()
    if breakers is None:
        breakers = RedisBreakerStore(redis) if redis is not None else MemoryBreakerStore()
    policy = breaker_policy(settings)
    registry = SenderRegistry()
    providers: dict[str, str] = {}
    accounts: dict[str, str] = {}
    built: list[Sender] = []
    for channel in channel_names():
        chosen = _choose(channel, settings, table.get(channel, {}))
        if chosen is None:
            continue
        spec, sender = chosen
        built.append(sender)
        account = str(getattr(sender, "account", spec.name))
        providers[channel], accounts[channel] = spec.name, account
        if guard:
            name = f"{channel}:{spec.name}:{account}"
            sender = GuardedSender(
                sender,
                name,
                CircuitBreaker(name, breakers, policy),
                limiter,
                _rates(channel, settings, sender),
                tuple(getattr(sender, "recipient_rates", ())),
            )
        registry.register(channel, sender)
    return ChannelSetup(
        registry, providers, accounts, registry.on_sink(channel_names()), tuple(built), made
    )
