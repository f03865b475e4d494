"""The shared fixtures in tests/conftest.py keep their promises: fresh, private databases."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, inspect, make_url, text
from sqlalchemy.pool import NullPool

from tests.conftest import Resp


def tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("turn", [1, 2])
def test_each_test_gets_an_empty_database(database_url: str, turn: int) -> None:
    assert tables(database_url) == set()
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:  # left behind on purpose: the next turn must not see it
            connection.execute(text("CREATE TABLE leftover (n INTEGER)"))
    finally:
        engine.dispose()
    if database_url.startswith("postgresql"):
        assert (make_url(database_url).database or "").startswith("test_")
        assert make_url(database_url).database != "test"


def test_make_database_url_gives_another_empty_database_on_the_same_backend(
    database_url: str, make_database_url: Callable[[], str]
) -> None:
    other = make_database_url()
    assert other != database_url
    assert other.split(":", 1)[0] == database_url.split(":", 1)[0]
    assert tables(other) == set()


@pytest.mark.parametrize("turn", [1, 2])
def test_each_test_gets_an_empty_redis_database_of_its_own(redis_url: str, turn: int) -> None:
    server, number = redis_url.rsplit("/", 1)
    assert 1 <= int(number) <= 15
    with Resp(server) as redis:
        assert redis.call("GET", f"journey-test:claim:{number}") is not None
        redis.call("SELECT", number)
        assert redis.call("DBSIZE") == 0
        redis.call("SET", "leftover", str(turn))  # flushed after the test
