"""Fixtures of the live engine tests."""

from __future__ import annotations

import pytest

from tests.live.clock import T0, Clock


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)
