"""A guarded sender: the breaker and the rate limits act before the provider is called."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from engine.channels.breaker import BreakerPolicy, CircuitBreaker, MemoryBreakerStore
from engine.channels.guard import GuardedSender
from engine.channels.ratelimit import MemoryRateLimiter
from engine.channels.rates import Rate
from engine.channels.senders import OutboundMessage, Receipt
from engine.errors import CircuitOpen, DeliveryDeferred, RateLimited, TransientDeliveryError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept = seconds
        self.now += seconds


@dataclass
class Flaky:
    provider: str = "flaky"
    account: str = "acct"
    failing: bool = False
    calls: list[str] = field(default_factory=list)

    def send(self, message: OutboundMessage) -> Receipt:
        self.calls.append(message.message_id)
        if self.failing:
            raise TransientDeliveryError("HTTP 503")
        return Receipt(self.provider, message.message_id)


def message(n: int, to: str = "lilei") -> OutboundMessage:
    return OutboundMessage(f"msg_{n:04d}", "wecom", to, {"content": "hi"})


def guarded(
    inner: Flaky, clock: Clock, account: tuple[Rate, ...] = (), member: tuple[Rate, ...] = ()
) -> GuardedSender:
    breaker = CircuitBreaker(
        "wecom:flaky:acct", MemoryBreakerStore(), BreakerPolicy(3, 10.0), clock
    )
    return GuardedSender(
        inner,
        "wecom:flaky:acct",
        breaker,
        MemoryRateLimiter(clock),
        account,
        member,
        max_wait=1.0,
        sleep=clock.sleep,
    )


def test_passes_through_and_names_the_provider() -> None:
    inner, clock = Flaky(), Clock()
    sender = guarded(inner, clock)
    assert sender.send(message(1)) == Receipt("flaky", "msg_0001")
    assert (sender.provider, sender.account) == ("flaky", "acct")


def test_an_open_breaker_keeps_calls_from_the_provider() -> None:
    inner, clock = Flaky(failing=True), Clock()
    sender = guarded(inner, clock)
    for n in range(3):
        with pytest.raises(TransientDeliveryError):
            sender.send(message(n))
    with pytest.raises(CircuitOpen) as caught:
        sender.send(message(9))
    assert isinstance(caught.value, DeliveryDeferred)
    assert len(inner.calls) == 3
    inner.failing, clock.now = False, 10.0
    sender.send(message(9))  # the trial succeeds and closes it
    sender.send(message(10))
    assert inner.calls[-2:] == ["msg_0009", "msg_0010"]


def test_a_short_wait_for_the_rate_is_slept_a_long_one_deferred() -> None:
    inner, clock = Flaky(), Clock()
    sender = guarded(inner, clock, account=(Rate(2, 1.0),))
    sender.send(message(1))
    sender.send(message(2))
    sender.send(message(3))  # waits half a second for its slot
    assert clock.slept == pytest.approx(0.5)
    assert len(inner.calls) == 3
    slow = guarded(Flaky(), Clock(), account=(Rate(1, 60.0),))
    slow.send(message(1))
    with pytest.raises(RateLimited) as caught:
        slow.send(message(2))
    assert caught.value.retry_after == pytest.approx(60.0)


def test_the_member_limit_is_per_member() -> None:
    inner, clock = Flaky(), Clock()
    sender = guarded(inner, clock, member=(Rate(30, 60.0),))
    for n in range(30):
        sender.send(message(n, to="lilei"))
    with pytest.raises(RateLimited):
        sender.send(message(31, to="lilei"))
    sender.send(message(32, to="hanmeimei"))
    assert len(inner.calls) == 31


def test_a_rate_limited_trial_lets_the_next_caller_try() -> None:
    inner, clock = Flaky(failing=True), Clock()
    sender = guarded(inner, clock, account=(Rate(1, 60.0),))
    with pytest.raises(TransientDeliveryError):
        sender.send(message(1))
    for n in range(2, 4):  # rate limited: the provider is not called, no failure counted
        with pytest.raises(RateLimited):
            sender.send(message(n))
    assert sender.breaker.state().failures == 1
