"""Fixtures of the API tests: settings, the app on the ``db`` fixture, a TestClient."""

from __future__ import annotations

from collections.abc import Collection, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engine.api import create_app
from engine.settings import Settings
from engine.store.database import Database
from tests.api.support import ADMIN_TOKEN, OTHER_WRITE_KEY, SECRET_KEY, WRITE_KEY


class Wakes:
    """Counts ``on_ingest`` calls, and the partitions they were told of."""

    def __init__(self) -> None:
        self.count = 0
        self.partitions: set[int] = set()

    def __call__(self, partitions: Collection[int]) -> None:
        self.count += 1
        self.partitions.update(partitions)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        write_keys=[WRITE_KEY, OTHER_WRITE_KEY],
        admin_token=ADMIN_TOKEN,
        secret_key=SECRET_KEY,
        public_url="http://127.0.0.1:8000",
    )


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def app(db: Database, settings: Settings, wakes: Wakes) -> FastAPI:
    return create_app(db, settings, on_ingest=wakes)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client
