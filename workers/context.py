"""What one worker process holds: its database connections, its senders, its doorbell.

Made on first use in each process (after Celery forks its pool, never before: a
connection pool must not cross a fork) and closed when the process shuts down.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from redis import Redis

from engine.channels.config import ChannelSetup, build_channels
from engine.errors import ConfigurationError
from engine.live.engine import LiveEngine
from engine.settings import Settings
from engine.store.database import Database
from workers.doorbell import Doorbell, Publish

log = logging.getLogger("journey.worker")


def flags_url(settings: Settings) -> str | None:
    """Where doorbell flags live: ``JOURNEY_REDIS_URL``, else a Redis broker."""
    if settings.redis_url:
        return settings.redis_url
    broker = settings.broker_url or ""
    return broker if broker.startswith(("redis://", "rediss://")) else None


def make_doorbell(settings: Settings, publish: Publish) -> tuple[Doorbell, Redis | None]:
    url = flags_url(settings)
    redis = Redis.from_url(url) if url else None
    return Doorbell(publish, redis, lease=settings.send_lease), redis


def secret_key(settings: Settings) -> str:
    """``JOURNEY_SECRET_KEY``: every process that renders or answers links needs the same."""
    if settings.secret_key is None:
        raise ConfigurationError(
            "JOURNEY_SECRET_KEY", "is required: it signs the unsubscribe links in messages"
        )
    return settings.secret_key.get_secret_value()


@dataclass
class WorkerContext:
    settings: Settings
    db: Database
    channels: ChannelSetup
    engine: LiveEngine
    doorbell: Doorbell
    redis: Redis | None

    def close(self) -> None:
        self.channels.close()
        self.db.dispose()
        if self.redis is not None:
            self.redis.close()


_lock = threading.Lock()
_current: tuple[int, WorkerContext] | None = None
_publish: Publish | None = None


def set_publisher(publish: Publish) -> None:
    """How this process publishes doorbell tasks (set by ``workers.tasks``)."""
    global _publish
    _publish = publish


def current(make_settings: Callable[[], Settings] = Settings) -> WorkerContext:
    """This process's context, made on first use (and again after a fork)."""
    global _current
    with _lock:
        if _current is not None and _current[0] == os.getpid():
            return _current[1]
        if _publish is None:
            raise RuntimeError("workers.tasks must be imported before a context is made")
        settings = make_settings()
        logging.getLogger("alembic").setLevel(logging.WARNING)
        db = Database(settings.database_url)
        channels = build_channels(settings)
        engine = LiveEngine(
            db,
            channels.registry,
            public_url=settings.public_url,
            send_timeout=settings.send_timeout,
            claim_lease=timedelta(seconds=settings.send_lease),
            secret_key=secret_key(settings),
        )
        doorbell, redis = make_doorbell(settings, _publish)
        context = WorkerContext(settings, db, channels, engine, doorbell, redis)
        _current = (os.getpid(), context)
        log.info("worker process %d ready: %s", os.getpid(), "; ".join(channels.describe()))
        return context


def close() -> None:
    """Close this process's context, if it has one."""
    global _current
    with _lock:
        if _current is not None and _current[0] == os.getpid():
            _current[1].close()
        _current = None
