"""The Celery app: its queues, and the settings that make a task safe to lose or to repeat.

Queues, declared with kombu, so ops scale them apart (``journey worker -Q sms,email``):

- ``events``: apply the pending events (and due timers) of partitions of users;
- ``timers``: the same work, rung by the scheduler for partitions whose timers came due;
- one queue per channel (``sms``, ``email``, ``wecom``, ``push``, and plugged-in ones):
  deliver that channel's due messages.

Tasks carry partition numbers or a channel name, never a user's data. They may be lost
(the scheduler rings again) or run twice (claims in the database make the second a no-op):

- ``acks_late`` with ``reject_on_worker_lost``: a task whose worker dies is delivered again;
- hard time limits below the broker's visibility timeout, so a task is never redelivered
  while it still runs;
- one task prefetched per worker process: a slow task holds up nothing behind it;
- no results are kept: the database is where the outcome is.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from engine.queues import queue_names
from engine.settings import Settings

#: Seconds a task may work before it hands what is left back to the broker.
TASK_BUDGET = 20.0
SOFT_TIME_LIMIT = 40
HARD_TIME_LIMIT = 50
#: Redis redelivers an unacknowledged task after this; it must exceed the hard limit.
VISIBILITY_TIMEOUT = 120


def make_app(settings: Settings | None = None) -> Celery:
    """A Celery app on ``JOURNEY_BROKER_URL`` (Redis, RabbitMQ, any kombu transport)."""
    settings = settings or Settings()
    app = Celery("journey", broker=settings.broker_url, include=["workers.tasks"])
    exchange = Exchange("journey", type="direct")
    app.conf.update(
        task_queues=[Queue(name, exchange, routing_key=name) for name in queue_names()],
        task_default_queue="events",
        task_default_exchange="journey",
        task_default_routing_key="events",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_soft_time_limit=SOFT_TIME_LIMIT,
        task_time_limit=HARD_TIME_LIMIT,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_pool_limit=4,
    )
    app.set_default()  # every thread publishes through this app, not Celery's fallback
    return app
