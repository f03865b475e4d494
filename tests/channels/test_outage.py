"""A provider down for a minute, then back: every message arrives once, nothing is lost.

Each built-in provider's fake fails (errors, or hung-up connections) for the first 60
seconds of a virtual clock. Ten messages are delivered by a loop that does what the
dispatcher does: a transient failure is retried after the backoff, a deferral (breaker
open) after its ``retry_after`` without counting a try. The sender stands behind its
circuit breaker, as :func:`~engine.channels.config.build_channels` puts it.

Checked: every error on the way is transient; the breaker opened and held the queue, so
the provider saw only a few failing calls rather than a retry per message; no message
ran out of tries; each message reached the provider exactly once; the breaker closed.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import pytest

from engine.channels.backoff import Backoff
from engine.channels.breaker import BreakerPolicy, CircuitBreaker, MemoryBreakerStore
from engine.channels.guard import GuardedSender
from engine.channels.ratelimit import MemoryRateLimiter
from engine.channels.senders import OutboundMessage, Receipt
from engine.errors import DeliveryDeferred, DeliveryError, TransientDeliveryError
from tests.channels.harness import PROVIDERS, harness_for

OUTAGE = 60.0
MESSAGES = 10
THRESHOLD = 3


@dataclass
class VirtualClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Counting:
    """Counts the calls that reached the provider's sender."""

    inner: object
    calls: int = 0

    def send(self, message: OutboundMessage) -> Receipt:
        self.calls += 1
        return self.inner.send(message)  # type: ignore[attr-defined, no-any-return]


@dataclass
class Run:
    delivered: list[str] = field(default_factory=list)
    errors: list[DeliveryError] = field(default_factory=list)
    most_tries: int = 0


def deliver_all(sender: GuardedSender, messages: list[OutboundMessage], clock: VirtualClock) -> Run:
    backoff, rng, run = Backoff(base=5.0, max_tries=5), random.Random(7), Run()
    queue = [(float(i), i, message, 0) for i, message in enumerate(messages)]
    heapq.heapify(queue)
    while queue:
        due, seq, message, tries = heapq.heappop(queue)
        clock.now = max(clock.now, due)
        try:
            sender.send(message)
        except DeliveryDeferred as exc:
            run.errors.append(exc)
            heapq.heappush(queue, (clock.now + (exc.retry_after or 1.0), seq, message, tries))
            continue
        except DeliveryError as exc:
            run.errors.append(exc)
            if not isinstance(exc, TransientDeliveryError):
                continue
            tries += 1
            run.most_tries = max(run.most_tries, tries)
            if backoff.exhausted(tries):
                continue
            delay = backoff.delay(tries, exc.retry_after, rng.random)
            heapq.heappush(queue, (clock.now + delay, seq, message, tries))
            continue
        run.delivered.append(message.message_id)
    return run


@pytest.mark.parametrize("kind", ["error", "reset"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_minute_of_outage_ends_with_every_message_delivered_once(
    provider: str, kind: str
) -> None:
    clock = VirtualClock()
    with harness_for(provider) as harness:
        harness.outage.clock = clock
        harness.outage.outage = kind
        harness.outage.down_until = OUTAGE
        counting = Counting(harness.sender)
        breaker = CircuitBreaker(
            provider,
            MemoryBreakerStore(),
            BreakerPolicy(threshold=THRESHOLD, cooldown=10.0),
            clock=clock,
        )
        guarded = GuardedSender(
            counting,  # type: ignore[arg-type]
            provider,
            breaker,
            MemoryRateLimiter(clock),
            recipient_rates=getattr(harness.sender, "recipient_rates", ()),
            sleep=clock.sleep,
        )
        messages = [harness.make(f"msg_outage{i:02d}") for i in range(MESSAGES)]
        run = deliver_all(guarded, messages, clock)

        ids = [m.message_id for m in messages]
        assert sorted(run.delivered) == ids
        assert sorted(harness.delivered()) == ids  # each reached the provider once
        assert all(isinstance(e, TransientDeliveryError) for e in run.errors)
        assert any(isinstance(e, DeliveryDeferred) for e in run.errors)  # the breaker held
        failed_calls = counting.calls - MESSAGES
        assert THRESHOLD <= failed_calls <= THRESHOLD + 3
        assert run.most_tries < 5
        assert clock.now > OUTAGE
        assert breaker.state().state == "closed"
