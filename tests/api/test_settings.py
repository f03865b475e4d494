"""engine.settings: JOURNEY_* from the environment, comma-separated write keys."""

from __future__ import annotations

import os

import pytest

from engine.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("JOURNEY_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = Settings()
    assert settings.database_url is None
    assert settings.write_keys == []
    assert settings.admin_token is None
    assert settings.public_url == "http://127.0.0.1:8000"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", "postgresql+psycopg://u@db/journey")
    monkeypatch.setenv("JOURNEY_WRITE_KEYS", " key-1, key-2 ,,key-3 ")
    monkeypatch.setenv("JOURNEY_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("JOURNEY_PUBLIC_URL", "https://journeys.example.com/")
    monkeypatch.setenv("JOURNEY_HOST", "0.0.0.0")
    monkeypatch.setenv("JOURNEY_PORT", "9000")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u@db/journey"
    assert settings.write_keys == ["key-1", "key-2", "key-3"]
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)  # never printed by accident
    assert settings.public_url == "https://journeys.example.com"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)


@pytest.mark.parametrize(
    ("raw", "keys"),
    [("one", ["one"]), ("", []), (" , ", []), ('["a", "b"]', ["a", "b"])],
)
def test_write_keys_forms(raw: str, keys: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_WRITE_KEYS", raw)
    assert Settings().write_keys == keys


def test_blank_token_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_ADMIN_TOKEN", "  ")
    assert Settings().admin_token is None


def test_arguments_as_a_list() -> None:
    assert Settings(write_keys=["x", " y "]).write_keys == ["x", "y"]


def test_bad_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_PORT", "http")
    with pytest.raises(ValueError, match="port"):
        Settings()
