"""What a message says: the render scope and the rendered parts of one dispatch."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.channels import ChannelSpec, get_channel
from engine.errors import RenderError
from engine.graph import CompiledJourney, InlineContent, SendNode
from engine.runs import (
    MessageRef,
    RunState,
)

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def unsubscribe_url(public_url: str, message_id: str) -> str:
    """The one-click unsubscribe link of a message; it carries the message id, no PII."""
    return f"{public_url.rstrip('/')}/unsubscribe/{message_id}"


def address_of(channel: ChannelSpec | str, profile: Mapping[str, Any]) -> str | None:
    """The profile's address for ``channel`` (phone, email...), or None.

    A channel given by name (a stored message names its channel) is looked up among
    the registered channels.
    """
    spec = get_channel(channel) if isinstance(channel, str) else channel
    value = profile.get(spec.address_trait) if spec else None
    return str(value) if value not in (None, "") and not isinstance(value, dict | list) else None


def render_message(
    journey: CompiledJourney,
    ref: MessageRef,
    run: RunState,
    profile: Mapping[str, Any],
    now: datetime,
    public_url: str = DEFAULT_PUBLIC_URL,
) -> dict[str, str]:
    """Render every part of ``ref``'s message; raises RenderError (the message then fails)."""
    node = journey.nodes.get(ref.step)
    attempt = node.attempts[ref.attempt] if isinstance(node, SendNode) else None
    if attempt is None or attempt.channel.name != ref.channel:
        raise RenderError(f"step {ref.step!r} of {journey.id!r} is not a send on {ref.channel!r}")
    content = attempt.content
    if isinstance(content, InlineContent):
        parts = content.parts
    else:
        found = content.store.resolve(content.name, attempt.channel, profile.get("locale"))
        if found is None:
            raise RenderError(f"no {ref.channel} template {content.name!r}")
        parts = found
    scope = {
        "profile": profile,
        "trigger": run.trigger,
        "event": run.event,
        "user_id": ref.user_id,
        "now": now,
        "message_id": ref.message_id,
        "unsubscribe_url": unsubscribe_url(public_url, ref.message_id),
    }
    return parts.render(scope)
