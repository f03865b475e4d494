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
from engine.signed_links import unsubscribe_token

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def unsubscribe_url(
    public_url: str, message_id: str, *, user_key: str, channel: str, secret_key: str
) -> str:
    """The unsubscribe link of a message: its user (key), channel and id, signed with
    ``secret_key`` (``JOURNEY_SECRET_KEY``), so no other link can unsubscribe anyone.
    GET shows a confirmation page; POST, and RFC 8058 one-click POST, unsubscribe."""
    token = unsubscribe_token(secret_key, user_key, channel, message_id)
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"


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
    *,
    user_key: str,
    secret_key: str,
) -> dict[str, str]:
    """Render every part of ``ref``'s message; raises RenderError (the message then fails).

    ``user_key`` is the key of the user the message is for (the outbox row's ``user_key``)
    and ``secret_key`` signs its unsubscribe link (``JOURNEY_SECRET_KEY``).
    """
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
    }
    if parts.reads("unsubscribe_url"):  # signing is a good part of a short message's cost
        scope["unsubscribe_url"] = unsubscribe_url(
            public_url,
            ref.message_id,
            user_key=user_key,
            channel=ref.channel,
            secret_key=secret_key,
        )
    return parts.render(scope)
