"""A bare Celery app with one task that does nothing but count itself: the baseline of
``benchmarks/run.py`` (a Celery round trip on the same broker, with the same task
settings as the engine's: late acknowledgement, one task prefetched per process)."""

from __future__ import annotations

import os

from celery import Celery
from redis import Redis

app = Celery("noop", broker=os.environ["NOOP_BROKER_URL"])
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
_counter = Redis.from_url(os.environ["NOOP_COUNTER_URL"])


@app.task(name="noop")
def noop() -> None:
    _counter.incr("noop:done")
