"""A sender behind its provider's circuit breaker and rate limits: still just ``send``.

:class:`GuardedSender` wraps a provider's sender. Before the call it asks the breaker
(open: :class:`~engine.errors.CircuitOpen`) and takes a slot from every rate limit that
applies: the account's, and the recipient's where the provider limits per recipient
(WeCom: per member per minute). A short wait for a slot is slept through in place, which
is what a steady rate means; a longer one raises :class:`~engine.errors.RateLimited`.
Both are :class:`~engine.errors.DeliveryDeferred`: the provider was not called, so the
dispatcher retries after ``retry_after`` without counting a try. After the call the
breaker learns how it went.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.channels.breaker import CircuitBreaker
from engine.channels.ratelimit import Limit, RateLimiter, recipient_key
from engine.channels.rates import Rate
from engine.channels.senders import OutboundMessage, Receipt, Sender
from engine.errors import RateLimited


@dataclass
class GuardedSender:
    """``sender`` behind ``breaker`` and the limits of ``name`` (channel:provider:account)."""

    sender: Sender
    name: str
    breaker: CircuitBreaker
    limiter: RateLimiter
    account_rates: tuple[Rate, ...] = ()
    recipient_rates: tuple[Rate, ...] = ()
    max_wait: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    @property
    def provider(self) -> str:
        return str(getattr(self.sender, "provider", self.name))

    @property
    def account(self) -> str:
        return str(getattr(self.sender, "account", self.name))

    def limits(self, message: OutboundMessage) -> list[Limit]:
        limits = [Limit(f"{self.name}:{rate}", rate) for rate in self.account_rates]
        if self.recipient_rates:
            who = recipient_key(message.to)
            limits += [Limit(f"{self.name}:to:{who}:{rate}", rate) for rate in self.recipient_rates]
        return limits

    def send(self, message: OutboundMessage) -> Receipt:
        self.breaker.admit()
        limits = self.limits(message)
        wait = self.limiter.acquire(limits) if limits else 0.0
        if 0 < wait <= self.max_wait:
            self.sleep(wait)
            wait = self.limiter.acquire(limits)
        if wait > 0:
            self.breaker.release()
            raise RateLimited(f"{self.name} rate limit reached", retry_after=wait)
        try:
            receipt = self.sender.send(message)
        except Exception as exc:
            self.breaker.record(exc)
            raise
        self.breaker.record(None)
        return receipt
