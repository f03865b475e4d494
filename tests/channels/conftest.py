"""Fixtures of the channel tests: every built-in provider against its local fake."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.channels.harness import PROVIDERS, REFUSING, Harness, harness_for


@pytest.fixture(params=PROVIDERS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with harness_for(request.param) as running:
        yield running


@pytest.fixture(params=REFUSING)
def refusing(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The providers that refuse an unknown address."""
    with harness_for(request.param) as running:
        yield running
