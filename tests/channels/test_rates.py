"""Rate settings: ``10``, ``10/s``, ``30/min``, ``1000/h``, several comma-separated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.channels.rates import Rate, parse_rates
from engine.settings import Settings


def test_parses_what_operators_write() -> None:
    assert parse_rates("10") == (Rate(10, 1.0),)
    assert parse_rates("2.5/s") == (Rate(2.5, 1.0),)
    assert parse_rates(" 30/min , 1000/h ") == (Rate(30, 60.0), Rate(1000, 3600.0))
    assert parse_rates("5000/d") == (Rate(5000, 86400.0),)


def test_rate_arithmetic() -> None:
    rate = Rate(30, 60.0)
    assert rate.interval == 2.0
    assert rate.burst == 30
    assert str(rate) == "30/min"
    assert Rate(0.5).burst == 1


@pytest.mark.parametrize("bad", ["fast", "10/week", "-3/s", "0", "10/"])
def test_refuses_what_is_not_a_rate(bad: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rates(bad)


def test_a_bad_rate_setting_names_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_SMS_RATE_LIMIT", "lots")
    with pytest.raises(ValidationError, match="sms_rate_limit"):
        Settings()
