"""Channel senders: one method, ``send(message) -> Receipt``, registered by channel name.

A sender raises :class:`~engine.errors.TransientDeliveryError` (retry later,
optionally after ``retry_after`` seconds) or
:class:`~engine.errors.PermanentDeliveryError` (never retry; the send step may
fall back to its next channel). The subclasses in :mod:`engine.errors` say more:
``ProviderThrottled`` (slow down), ``CredentialError`` (hold the channel until ops
fix it), ``DeliveryDeferred`` (the provider was not called: not a try) and
``InvalidAddress`` (the address is wrong for good; ``clear`` asks for the trait to
be removed). ``message.message_id`` is the idempotency key: providers that accept
one are given it, so a retry after a crash is a no-op there.

A sender may also expose ``account``: a non-secret name of the provider account it
sends from, so rate limits and circuit breakers are kept per account.

A channel with no provider configured uses :class:`LocalSink`: the message is
recorded as sent and its content kept, so the engine works out of the box.
:class:`RecordingSender` ships for tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutboundMessage:
    """What a sender gets: ids, the address and the rendered parts.

    Fields holding personal data are left out of ``repr`` so a message never ends up in a
    log line or a traceback by accident.

    - ``content``: the rendered parts the channel defines (``text``; ``subject``/``html``/
      ``text``; ``content``...; see :mod:`engine.channels`).
    - ``unsubscribe_url``: the message's one-click unsubscribe link, where the channel can
      carry it (email's ``List-Unsubscribe``).
    - ``headers``: extra headers for channels that have them (email).
    - ``params``: provider options that are not content (documented per provider).
    - ``locale``: the recipient's locale (``zh-CN``), for providers that localise.
    """

    message_id: str
    channel: str
    to: str = field(repr=False)
    content: Mapping[str, str] = field(repr=False)
    unsubscribe_url: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    params: Mapping[str, str] = field(default_factory=dict)
    locale: str | None = None


@dataclass(frozen=True)
class Receipt:
    """The provider's acknowledgement.

    ``segments`` is how many billable parts an SMS was split into (None for other channels).
    """

    provider: str
    provider_message_id: str | None = None
    segments: int | None = None


class Sender(Protocol):
    """Delivers messages of one channel through one provider."""

    def send(self, message: OutboundMessage) -> Receipt: ...


class LocalSink:
    """Delivers nowhere: the dispatcher records the message as sent with its content."""

    provider = "local"
    account = "local"

    def send(self, message: OutboundMessage) -> Receipt:
        return Receipt("local", message.message_id)


@dataclass
class RecordingSender:
    """Records what it was given, honouring the idempotency key like a real provider."""

    provider: str = "recording"
    sent: dict[str, OutboundMessage] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def account(self) -> str:
        return self.provider

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

    def configured(self) -> tuple[str, ...]:
        """The channels that have a sender of their own, sorted."""
        return tuple(sorted(self._senders))

    def on_sink(self, channels: Iterable[str]) -> tuple[str, ...]:
        """Those of ``channels`` that deliver to the local sink, sorted."""
        return tuple(sorted(set(channels) - set(self._senders)))
