"""Settings of the live engine, from the environment (``JOURNEY_*``).

- ``JOURNEY_DATABASE_URL``: the database (default: the embedded SQLite file, see engine.store).
- ``JOURNEY_WRITE_KEYS``: comma-separated Segment write keys the tracking API accepts.
- ``JOURNEY_ADMIN_TOKEN``: bearer token of the admin API (unset: it refuses everyone).
- ``JOURNEY_ADMIN_TOKENS``: named admin tokens, ``alice:tok1,ops:tok2``; the audit log
  records who acted by the token's name (``JOURNEY_ADMIN_TOKEN`` is the token named
  ``admin``). Both may be set; every token listed is accepted.
- ``JOURNEY_SECRET_KEY``: signs the unsubscribe links in messages (at least 16 characters;
  ``journey run`` makes one up when unset). Every process that sends or answers links needs
  the same key; changing it makes the links already sent invalid.
- ``JOURNEY_PUBLIC_URL``: the URL users reach the server at (unsubscribe links).
- ``JOURNEY_HOST`` / ``JOURNEY_PORT``: where the server listens (default 127.0.0.1:8000).
- ``JOURNEY_SEND_LEASE``: seconds a dispatcher's claim on a message lasts unless renewed
  (default 10; renewed every third of it while the dispatcher works). A dispatcher that
  dies holds its messages at most this long.
- ``JOURNEY_BROKER_URL``: the Celery broker of ``journey worker`` / ``scheduler`` / ``api``
  (default ``redis://127.0.0.1:6379/0``; any kombu URL, e.g. ``amqp://guest@host//``).
  Doorbell flags live in ``JOURNEY_REDIS_URL``, else in a Redis broker.
- ``JOURNEY_METRICS_PORT``: where ``journey worker`` and ``journey scheduler`` serve
  Prometheus metrics (``/metrics``; unset: not served). The API serves them at ``/metrics``
  behind the admin token.
- ``JOURNEY_EVENT_RETENTION``: how long payloads of applied events and contents of sent
  messages are kept (a duration: ``90d``, ``12w``; unset: kept until a user is forgotten).
- ``JOURNEY_BODY_TIMEOUT``: seconds a request body may stall before the request is answered
  408 and its connection closed (default 10).
- Channel providers, rate limits and circuit breakers: see :mod:`engine.channels.settings`.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from engine.channels.settings import ChannelSettings
from engine.durations import parse_duration

MIN_SECRET_KEY = 16
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


class Settings(ChannelSettings):
    # Errors name the setting, never its value: several values are secrets.
    model_config = SettingsConfigDict(
        env_prefix="JOURNEY_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str | None = None
    # NoDecode: the environment holds "k1,k2", not JSON; the validator below splits it.
    write_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    admin_token: SecretStr | None = None
    admin_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    secret_key: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    send_lease: float = Field(default=10.0, ge=1, le=600)
    broker_url: str = "redis://127.0.0.1:6379/0"
    body_timeout: float = Field(default=10.0, gt=0)
    event_retention: timedelta | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: Processes `journey simulate` splits users among; None: one per core, for files
    #: large enough to gain from it (``--workers`` overrides it).
    simulate_workers: int | None = Field(default=None, ge=1, le=64)

    @field_validator("event_retention", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            return parse_duration(value.strip())
        return value

    @field_validator("write_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = json.loads(text)
            else:
                return [key.strip() for key in text.split(",") if key.strip()]
        if isinstance(value, list | tuple):
            return [str(key).strip() for key in value if str(key).strip()]
        return value

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _named_tokens(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        named: dict[str, str] = {}
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            name, colon, token = item.partition(":")
            name, token = name.strip(), token.strip()
            if not colon or not name or not token:
                raise ValueError(f"{item.split(':')[0]!r}: write name:token, e.g. alice:s3cret")
            if not NAME.fullmatch(name):
                raise ValueError(f"{name!r}: a name is letters, digits and . _ @ - (64 at most)")
            if name in named:
                raise ValueError(f"{name!r} is named twice")
            named[name] = token
        if len(set(named.values())) < len(named):
            raise ValueError("two names share one token: give each its own")
        return named

    def named_admin_tokens(self) -> dict[str, str]:
        """Every admin token by its name: ``JOURNEY_ADMIN_TOKENS``, and
        ``JOURNEY_ADMIN_TOKEN`` as ``admin`` (unless a listed token takes that name)."""
        named = {name: token.get_secret_value() for name, token in self.admin_tokens.items()}
        if self.admin_token is not None:
            named.setdefault("admin", self.admin_token.get_secret_value())
        return named

    @field_validator("admin_token", "secret_key", "database_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_KEY:
            raise ValueError(f"must be at least {MIN_SECRET_KEY} characters (a random string)")
        return value

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
