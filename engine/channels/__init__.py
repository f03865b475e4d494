"""Channels: what each one needs (address trait, message parts) and how it is sent.

The built-in channels are those of journey-format section 5. Another channel is
plugged in with :func:`register_channel` (by hand, or by a package through the
``journey.channels`` entry points, see :mod:`engine.channels.plugins`); journeys may
then name it. How messages leave: :mod:`engine.channels.senders` (the interface),
:mod:`engine.channels.config` (providers from the settings), ``providers/``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelSpec:
    """What a channel needs from a profile and a template."""

    name: str
    address_trait: str
    required_parts: tuple[str, ...]
    optional_parts: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        """Every part the channel knows, required first."""
        return self.required_parts + self.optional_parts

    @property
    def single_part(self) -> str | None:
        """The part a whole-file template stands for: the channel's one required part."""
        return self.required_parts[0] if len(self.required_parts) == 1 else None


_REGISTRY: dict[str, ChannelSpec] = {}


def register_channel(spec: ChannelSpec) -> None:
    """Make a channel known to the compiler and the runtime (idempotent per name)."""
    _REGISTRY[spec.name] = spec


def get_channel(name: str) -> ChannelSpec | None:
    """The channel named ``name``, or None when no such channel is registered."""
    return _REGISTRY.get(name)


def channel_names() -> tuple[str, ...]:
    """The names of every registered channel, sorted."""
    return tuple(sorted(_REGISTRY))


for _spec in (
    # Aliyun sends approved templates: their code and variables (a JSON object).
    ChannelSpec("sms", "phone", ("text",), ("template_code", "template_param")),
    # Email's plain-text part is optional: providers derive one when it is absent.
    ChannelSpec("email", "email", ("subject", "html"), ("text",)),
    # With a title and a URL, WeCom shows a card whose description is the content.
    ChannelSpec("wecom", "wecom_userid", ("content",), ("title", "url")),
    ChannelSpec("push", "push_token", ("title", "body"), ("url",)),
):
    register_channel(_spec)
