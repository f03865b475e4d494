"""Depths of the Celery queues, read from the broker.

With Redis as the broker, a queue is a list under the queue's name, so its depth is one
``LLEN``. Other brokers (RabbitMQ...) are not asked: the depth is unknown (None), and
the broker's own console shows it. The embedded ``journey run`` has no broker at all.
"""

from __future__ import annotations

import logging

import redis

from engine.channels import channel_names

log = logging.getLogger("journey.ops")
#: The queues the input work goes to; one more per channel (see ``workers.app``).
INPUT_QUEUES = ("events", "timers")


def queue_names() -> tuple[str, ...]:
    """Every queue: the input queues, then one per channel known now."""
    return (*INPUT_QUEUES, *channel_names())


def queue_depths(broker_url: str | None) -> dict[str, int] | None:
    """Messages waiting in each queue, or None when the broker cannot say (not Redis,
    no broker, or the broker did not answer within a second)."""
    if broker_url is None or not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = redis.Redis.from_url(broker_url, socket_timeout=1, socket_connect_timeout=1)
    try:
        pipe = client.pipeline(transaction=False)
        names = queue_names()
        for name in names:
            pipe.llen(name)
        return dict(zip(names, (int(n) for n in pipe.execute()), strict=True))
    except redis.RedisError as exc:
        log.warning("queue depths unavailable: %s", type(exc).__name__)
        return None
    finally:
        client.close()
