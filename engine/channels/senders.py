"""Channel senders: one method, ``send(message) -> Receipt``, registered by channel name.

A sender raises :class:`~engine.errors.TransientDeliveryError` (retry later,
optionally after ``retry_after`` seconds) or
:class:`~engine.errors.PermanentDeliveryError` (never retry; the send step may
fall back to its next channel). ``message.message_id`` is the idempotency key:
providers that accept one must be given it, so a retry after a crash is a no-op.

A channel with no provider configured uses :class:`LocalSink`: the message is
recorded as sent and its content kept, so the engine works out of the box.
:class:`RecordingSender` ships for tests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutboundMessage:
    """What a sender gets: ids, the address and the rendered parts. Never logged."""

    message_id: str
    channel: str
    to: str
    content: Mapping[str, str]


@dataclass(frozen=True)
class Receipt:
    """The provider's acknowledgement."""

    provider: str
    provider_message_id: str | None = None


class Sender(Protocol):
    """Delivers messages of one channel through one provider."""

    def send(self, message: OutboundMessage) -> Receipt: ...


class LocalSink:
    """Delivers nowhere: the dispatcher records the message as sent with its content."""

    def send(self, message: OutboundMessage) -> Receipt:
        return Receipt("local", message.message_id)


@dataclass
class RecordingSender:
    """Records what it was given, honouring the idempotency key like a real provider."""

    provider: str = "recording"
    sent: dict[str, OutboundMessage] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: OutboundMessage) -> Receipt:
        with self._lock:
            self.calls.append(message.message_id)
            self.sent.setdefault(message.message_id, message)
        return Receipt(self.provider, message.message_id)


class SenderRegistry:
    """Senders by channel name; channels without one deliver to the local sink."""

    def __init__(self, senders: Mapping[str, Sender] | None = None) -> None:
        self._senders = dict(senders or {})
        self._sink = LocalSink()

    def register(self, channel: str, sender: Sender) -> None:
        self._senders[channel] = sender

    def for_channel(self, channel: str) -> Sender:
        return self._senders.get(channel, self._sink)
