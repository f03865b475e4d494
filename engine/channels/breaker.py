"""Circuit breakers: a provider that keeps failing is left alone for a while.

One breaker per provider account, in one of three states:

- **closed**: calls go through; consecutive transient failures (timeouts, 5xx) are
  counted, and any answer from the provider (a success, or a permanent refusal of one
  message) resets the count. Throttling is not counted: the provider is healthy.
- **open**: after ``threshold`` consecutive failures, or at once on a credential error,
  no call goes out for ``cooldown`` seconds: :meth:`CircuitBreaker.admit` raises
  :class:`~engine.errors.CircuitOpen` with ``retry_after``, and the dispatcher holds the
  channel's queue instead of burning retries or failing messages into their fallback.
  A credential error holds it ten times as long and its reason says so.
- **half-open**: once the cooldown is over, exactly one trial call is let through (with
  a lease, in case its worker dies). Success closes the breaker; failure opens it again
  for twice the previous cooldown, up to ``max_cooldown``.

The state lives in a :class:`BreakerStore`: in the process (:class:`MemoryBreakerStore`)
or in Redis (:class:`RedisBreakerStore`, optimistic transactions), so every worker sees a
breaker open at once. Transitions are pure functions of (state, now), tested on their own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Literal, Protocol, TypeVar

from redis import Redis, WatchError

from engine.errors import (
    CircuitOpen,
    CredentialError,
    DeliveryDeferred,
    PermanentDeliveryError,
    ProviderThrottled,
)

log = logging.getLogger("journey.channels")
T = TypeVar("T")
State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class BreakerPolicy:
    threshold: int = 5
    cooldown: float = 30.0
    credential_cooldown: float = 300.0
    max_cooldown: float = 600.0
    trial_lease: float = 60.0


@dataclass(frozen=True)
class BreakerState:
    """What a breaker remembers. Times are seconds since the epoch."""

    state: State = "closed"
    failures: int = 0
    open_until: float = 0.0
    cooldown: float = 0.0  # how long the last opening lasted
    trial_until: float = 0.0
    reason: str = ""
    credential: bool = False


CLOSED = BreakerState()


def admit(state: BreakerState, now: float, policy: BreakerPolicy) -> tuple[BreakerState, float]:
    """Whether a call may go now: (new state, 0.0) if so, else (state, seconds to wait)."""
    if state.state == "closed":
        return state, 0.0
    if state.state == "open" and now < state.open_until:
        return state, state.open_until - now
    if state.state == "half_open" and now < state.trial_until:
        return state, min(state.trial_until - now, policy.cooldown)
    return replace(state, state="half_open", trial_until=now + policy.trial_lease), 0.0


def succeed(state: BreakerState) -> BreakerState:
    """The provider answered: close."""
    return CLOSED


def fail(
    state: BreakerState, now: float, policy: BreakerPolicy, reason: str, credential: bool
) -> BreakerState:
    """A transient failure (or a credential error): count it, open when it is time."""
    if credential:
        cooldown = policy.credential_cooldown
    elif state.state == "half_open":  # the trial failed: back off further
        cooldown = min(max(state.cooldown, policy.cooldown) * 2, policy.max_cooldown)
    elif state.state == "closed" and state.failures + 1 < policy.threshold:
        return replace(state, failures=state.failures + 1, reason=reason)
    elif state.state == "open":  # a call that started before it opened
        return state
    else:
        cooldown = policy.cooldown
    return BreakerState(
        "open", state.failures + 1, now + cooldown, cooldown, 0.0, reason, credential
    )


def release(state: BreakerState) -> BreakerState:
    """A trial was admitted but never made: let another caller try."""
    return replace(state, trial_until=0.0) if state.state == "half_open" else state


class BreakerStore(Protocol):
    def update(self, name: str, change: Callable[[BreakerState], tuple[BreakerState, T]]) -> T:
        """Apply ``change`` to the breaker's state atomically; return what it returned."""
        ...


class MemoryBreakerStore:
    """Breaker states in the process."""

    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}
        self._lock = threading.Lock()

    def update(self, name: str, change: Callable[[BreakerState], tuple[BreakerState, T]]) -> T:
        with self._lock:
            new, result = change(self._states.get(name, CLOSED))
            self._states[name] = new
            return result


class RedisBreakerStore:
    """Breaker states in Redis, one JSON value per breaker, changed under WATCH.

    A closed breaker with no failures is not written on success, so a healthy provider
    costs one read per call.
    """

    def __init__(self, redis: Redis, prefix: str = "journey:breaker:", ttl: int = 86400) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl

    def update(self, name: str, change: Callable[[BreakerState], tuple[BreakerState, T]]) -> T:
        key = self._prefix + name
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    old = BreakerState(**json.loads(raw)) if raw else CLOSED
                    new, result = change(old)
                    if new == old:
                        pipe.unwatch()
                        return result
                    pipe.multi()
                    pipe.set(key, json.dumps(asdict(new)), ex=self._ttl)
                    pipe.execute()
                    return result
                except WatchError:  # another worker changed it first: read again
                    continue


@dataclass
class CircuitBreaker:
    """The breaker of one provider account."""

    name: str
    store: BreakerStore
    policy: BreakerPolicy = BreakerPolicy()
    clock: Callable[[], float] = time.time

    def admit(self) -> None:
        """Return if a call may go now; raise :class:`CircuitOpen` otherwise."""
        now = self.clock()

        def change(state: BreakerState) -> tuple[BreakerState, tuple[float, BreakerState]]:
            new, wait = admit(state, now, self.policy)
            return new, (wait, state)

        wait, state = self.store.update(self.name, change)
        if wait > 0:
            what = "credentials refused" if state.credential else "provider failing"
            raise CircuitOpen(f"{self.name} held ({what}): {state.reason}", retry_after=wait)

    def release(self) -> None:
        """An admitted call was not made after all (rate limited)."""
        self.store.update(self.name, lambda state: (release(state), None))

    def record(self, error: BaseException | None) -> None:
        """How an admitted call went: None for success, else the error it raised.

        A permanent refusal of one message is an answer (the provider is up); throttling
        says nothing about health; any other error, credential errors and exceptions
        outside the sender contract included, is a failure.
        """
        if isinstance(error, ProviderThrottled | DeliveryDeferred):
            self.release()
            return
        if error is None or isinstance(error, PermanentDeliveryError):
            self.store.update(self.name, lambda state: (succeed(state), None))
            return
        now = self.clock()
        credential = isinstance(error, CredentialError)
        reason = str(error)

        def change(state: BreakerState) -> tuple[BreakerState, tuple[State, State]]:
            new = fail(state, now, self.policy, reason, credential)
            return new, (state.state, new.state)

        before, after = self.store.update(self.name, change)
        if after == "open" and before != "open":
            log.warning(
                "circuit %s opened%s: %s",
                self.name,
                " (credentials refused: fix the settings)" if credential else "",
                reason,
            )

    def state(self) -> BreakerState:
        return self.store.update(self.name, lambda state: (state, state))
