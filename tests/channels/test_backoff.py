"""Backoff: exponential, jittered within its band, bounded, honouring Retry-After."""

from __future__ import annotations

from engine.channels.backoff import Backoff

LOW, HIGH = (lambda: 0.0), (lambda: 0.999999)


def test_doubles_within_a_jitter_band() -> None:
    backoff = Backoff(base=5.0, cap=600.0, jitter=0.5)
    assert [backoff.delay(n, rng=LOW) for n in (1, 2, 3, 4)] == [2.5, 5.0, 10.0, 20.0]
    assert [round(backoff.delay(n, rng=HIGH), 3) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]


def test_never_waits_longer_than_the_cap() -> None:
    backoff = Backoff(base=5.0, cap=60.0)
    assert max(backoff.delay(n, rng=HIGH) for n in range(1, 30)) <= 60.0


def test_honours_retry_after_and_spreads_a_crowd_a_little() -> None:
    backoff = Backoff()
    assert backoff.delay(1, retry_after=30.0, rng=LOW) == 30.0
    assert 30.0 < backoff.delay(1, retry_after=30.0, rng=HIGH) <= 33.0
    assert backoff.delay(4, retry_after=7.0, rng=LOW) == 7.0  # not the exponential 40


def test_a_retry_after_is_bounded_too() -> None:
    assert Backoff(retry_after_cap=3600.0).delay(1, retry_after=86400.0, rng=LOW) == 3600.0


def test_gives_up_after_max_tries() -> None:
    backoff = Backoff(max_tries=5)
    assert not backoff.exhausted(4)
    assert backoff.exhausted(5)
