"""Circuit breakers: the pure transitions, and the breaker over in-process and Redis state."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import fakeredis
import pytest
from redis import Redis

from engine.channels.breaker import (
    CLOSED,
    BreakerPolicy,
    BreakerState,
    BreakerStore,
    CircuitBreaker,
    MemoryBreakerStore,
    RedisBreakerStore,
    admit,
    fail,
)
from engine.errors import (
    CircuitOpen,
    CredentialError,
    InvalidAddress,
    PermanentDeliveryError,
    ProviderThrottled,
    RateLimited,
    TransientDeliveryError,
)

POLICY = BreakerPolicy(threshold=3, cooldown=10.0, credential_cooldown=100.0, max_cooldown=35.0)
DOWN = TransientDeliveryError("HTTP 503")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "fakeredis", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator[Callable[[], BreakerStore]]:
    """Makes stores that share one state, as workers do."""
    if request.param == "memory":
        store = MemoryBreakerStore()
        yield lambda: store
    elif request.param == "fakeredis":
        server = fakeredis.FakeServer()
        yield lambda: RedisBreakerStore(fakeredis.FakeRedis(server=server))
    else:
        url = request.getfixturevalue("redis_url")
        clients: list[Redis] = []

        def make() -> BreakerStore:
            clients.append(Redis.from_url(url))
            return RedisBreakerStore(clients[-1])

        yield make
        for client in clients:
            client.close()


def test_transitions_are_pure_functions_of_state_and_time() -> None:
    state = CLOSED
    for _ in range(2):
        state = fail(state, 0.0, POLICY, "down", credential=False)
    assert (state.state, state.failures) == ("closed", 2)
    state = fail(state, 0.0, POLICY, "down", credential=False)
    assert (state.state, state.open_until) == ("open", 10.0)
    assert admit(state, 5.0, POLICY) == (state, 5.0)
    trial, wait = admit(state, 10.0, POLICY)
    assert (trial.state, wait) == ("half_open", 0.0)
    assert admit(trial, 11.0, POLICY)[1] > 0  # one trial at a time
    again = fail(trial, 12.0, POLICY, "still down", credential=False)
    assert (again.state, again.open_until) == ("open", 32.0)  # twice the cooldown
    later = fail(admit(again, 40.0, POLICY)[0], 40.0, POLICY, "down", credential=False)
    assert later.open_until == 75.0  # doubling stops at max_cooldown


def test_consecutive_failures_open_it_and_it_holds(make_store: Callable[[], BreakerStore]) -> None:
    clock = Clock()
    breaker = CircuitBreaker("sms:aliyun:k", make_store(), POLICY, clock)
    for _ in range(3):
        breaker.admit()
        breaker.record(DOWN)
    with pytest.raises(CircuitOpen) as caught:
        breaker.admit()
    assert caught.value.retry_after == 10.0
    assert "provider failing" in str(caught.value) and "HTTP 503" in str(caught.value)


def test_every_worker_sees_it_open(make_store: Callable[[], BreakerStore]) -> None:
    clock = Clock()
    first = CircuitBreaker("push:fcm:p", make_store(), POLICY, clock)
    second = CircuitBreaker("push:fcm:p", make_store(), POLICY, clock)
    for _ in range(3):
        first.record(DOWN)
    with pytest.raises(CircuitOpen):
        second.admit()


def test_one_trial_after_the_cooldown_decides(make_store: Callable[[], BreakerStore]) -> None:
    clock = Clock()
    store = make_store()
    breaker = CircuitBreaker("email:smtp:relay", store, POLICY, clock)
    other = CircuitBreaker("email:smtp:relay", make_store(), POLICY, clock)
    for _ in range(3):
        breaker.record(DOWN)
    clock.now += 10.0
    breaker.admit()  # the trial
    with pytest.raises(CircuitOpen):
        other.admit()  # nobody else while it runs
    breaker.record(DOWN)  # it failed: open for twice as long
    clock.now += 19.0
    with pytest.raises(CircuitOpen):
        other.admit()
    clock.now += 1.0
    other.admit()
    other.record(None)
    assert breaker.state() == CLOSED
    breaker.admit()


def test_a_credential_error_opens_at_once_and_says_so(
    make_store: Callable[[], BreakerStore],
) -> None:
    clock = Clock()
    breaker = CircuitBreaker("sms:twilio:AC1", make_store(), POLICY, clock)
    breaker.record(CredentialError("Twilio 20003: Authenticate"))
    with pytest.raises(CircuitOpen, match="credentials refused") as caught:
        breaker.admit()
    assert caught.value.retry_after == 100.0
    assert breaker.state().credential


@pytest.mark.parametrize(
    "answer",
    [None, PermanentDeliveryError("template rejected"), InvalidAddress("bad", trait="phone")],
)
def test_any_answer_from_the_provider_resets_the_count(answer: Exception | None) -> None:
    breaker = CircuitBreaker("sms:aliyun:k", MemoryBreakerStore(), POLICY, Clock())
    breaker.record(DOWN)
    breaker.record(DOWN)
    breaker.record(answer)
    breaker.record(DOWN)
    breaker.record(DOWN)
    breaker.admit()  # two in a row, not four
    assert breaker.state().failures == 2


def test_throttling_and_deferrals_are_not_failures() -> None:
    breaker = CircuitBreaker("wecom:robot:r", MemoryBreakerStore(), POLICY, Clock())
    for error in [ProviderThrottled("45009", 60.0), RateLimited("ours", 1.0)] * 3:
        breaker.record(error)
    breaker.admit()
    assert breaker.state() == CLOSED


def test_other_exceptions_count_as_failures() -> None:
    breaker = CircuitBreaker("push:fcm:p", MemoryBreakerStore(), POLICY, Clock())
    for _ in range(3):
        breaker.record(RuntimeError("a sender broke its contract"))
    assert breaker.state().state == "open"


def test_a_trial_that_was_never_made_is_released() -> None:
    clock = Clock()
    breaker = CircuitBreaker("sms:aliyun:k", MemoryBreakerStore(), POLICY, clock)
    for _ in range(3):
        breaker.record(DOWN)
    clock.now += 10.0
    breaker.admit()
    breaker.release()
    breaker.admit()  # another caller may make the trial at once


def test_concurrent_workers_lose_no_update(redis_url: str) -> None:
    policy = BreakerPolicy(threshold=1000)
    clients = [Redis.from_url(redis_url) for _ in range(4)]

    def work(client: Redis) -> None:
        breaker = CircuitBreaker("sms:aliyun:shared", RedisBreakerStore(client), policy)
        for _ in range(25):
            breaker.record(DOWN)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = CircuitBreaker("sms:aliyun:shared", RedisBreakerStore(clients[0]), policy).state()
    for client in clients:
        client.close()
    assert state == BreakerState("closed", 100, reason="HTTP 503")
