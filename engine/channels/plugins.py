"""Channels and providers from other packages, found through the ``journey.channels`` entry points.

A package adds a channel (DingTalk, Feishu...) or a provider for an existing channel
(another SMS gateway) without touching the engine: it exposes a :class:`ChannelPlugin`
(or a function returning one) under the entry point group ``journey.channels``::

    [project.entry-points."journey.channels"]
    dingtalk = "journey_dingtalk:plugin"

:func:`load_plugins` loads them all (sorted by entry point name) and registers their
channels, so journeys may name them; :func:`engine.channels.config.build_channels` also
builds their senders. A provider of a built-in channel is chosen like the built-in ones
(``JOURNEY_SMS_PROVIDER=<its name>``); a plugin's own channel uses the first of its
providers whose factory returns a sender (the factory returns None while its own
settings are unset, and the channel stays on the local sink).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from engine.channels import ChannelSpec, register_channel
from engine.channels.senders import Sender
from engine.channels.settings import ChannelSettings
from engine.errors import EngineError

ENTRY_POINT_GROUP = "journey.channels"

#: Builds a provider's sender from the settings; None when the provider is not configured.
ProviderFactory = Callable[[ChannelSettings], Sender | None]


@dataclass(frozen=True)
class ProviderSpec:
    """A provider ``name`` delivering ``channel``, built by ``build``."""

    channel: str
    name: str
    build: ProviderFactory


@dataclass(frozen=True)
class ChannelPlugin:
    """What a package adds: channels journeys may name, and providers that deliver them."""

    name: str
    channels: tuple[ChannelSpec, ...] = ()
    providers: tuple[ProviderSpec, ...] = ()


def load_plugins(group: str = ENTRY_POINT_GROUP) -> tuple[ChannelPlugin, ...]:
    """Every installed plugin, its channels registered; a broken one stops the start."""
    plugins = []
    for entry in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            loaded = entry.load()
            plugin = loaded if isinstance(loaded, ChannelPlugin) else loaded()
        except Exception as exc:
            raise EngineError(
                f"channel plugin {entry.name!r} ({entry.value}) failed to load: {exc}"
            ) from exc
        if not isinstance(plugin, ChannelPlugin):
            raise EngineError(
                f"channel plugin {entry.name!r} ({entry.value}) is not a ChannelPlugin"
            )
        for spec in plugin.channels:
            register_channel(spec)
        plugins.append(plugin)
    return tuple(plugins)
