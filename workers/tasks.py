"""The Celery tasks: thin executors of the engine's services (``engine.services``).

A task answers its doorbell (clears the flags of its units), then lets the service claim
and do the work, round after round, for at most ``TASK_BUDGET`` seconds; what is left
is rung again. A round that fails because the database did (a lost connection, a
deadlock) is retried a few times with backoff; after that the work simply stays in the
database, where the scheduler's sweep finds it. Work that fails for a reason of its own
is set aside as a dead letter by the service and never loops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from celery import Task
from celery.signals import worker_process_shutdown
from sqlalchemy.exc import DBAPIError, OperationalError

from engine.queues import INPUT_QUEUES
from engine.services.work import Work
from workers import app, context
from workers.app import TASK_BUDGET
from workers.doorbell import Unit

log = logging.getLogger("journey.worker")
#: Partitions per task: one ring of a large ingest is split into tasks of this size.
PARTITIONS_PER_TASK = 128
RETRY = {
    "autoretry_for": (OperationalError, DBAPIError),
    "retry_backoff": 1,
    "retry_backoff_max": 10,
    "max_retries": 3,
}


def publish(kind: str, units: list[Unit]) -> None:
    """Send the tasks a doorbell rings: partitions to an input queue, channels to theirs."""
    if kind in INPUT_QUEUES:
        task = apply_events if kind == "events" else fire_timers
        for start in range(0, len(units), PARTITIONS_PER_TASK):
            task.apply_async(args=[units[start : start + PARTITIONS_PER_TASK]], queue=kind)
    else:
        for channel in units:
            deliver.apply_async(args=[channel], queue=str(channel))


context.set_publisher(publish)


def _report(work: Work) -> dict[str, Any]:
    return {
        "events": work.events,
        "timers": work.timers,
        "messages": work.messages,
        "dead": work.dead,
    }


def apply_inputs(kind: str, partitions: Sequence[int]) -> dict[str, Any]:
    """Apply what is pending in ``partitions`` (events, and timers due), within the budget."""
    ctx = context.current()
    wanted = sorted({int(p) for p in partitions})
    ctx.doorbell.answered(kind, wanted)
    deadline = time.monotonic() + TASK_BUDGET
    work = Work()
    while True:
        done = ctx.engine.apply(wanted)
        work += done
        if done.channels:
            ctx.doorbell.ring("dispatch", sorted(done.channels))
        if not done.any and not done.more:
            break  # nothing left, or the rest is someone else's claim right now
        if time.monotonic() > deadline:
            ctx.doorbell.ring(kind, wanted)  # hand the rest back
            break
    return _report(work)


def _events(self: Task, partitions: list[int]) -> dict[str, Any]:
    """Events were stored for users in ``partitions``."""
    return apply_inputs("events", partitions)


def _timers(self: Task, partitions: list[int]) -> dict[str, Any]:
    """Timers of users in ``partitions`` came due."""
    return apply_inputs("timers", partitions)


def _deliver(self: Task, channel: str) -> dict[str, Any]:
    """Messages of ``channel`` are due."""
    ctx = context.current()
    ctx.doorbell.answered("dispatch", [channel])
    deadline = time.monotonic() + TASK_BUDGET
    work = Work()
    while True:
        done = ctx.engine.dispatch([channel])
        work += done
        others = sorted(done.channels - {channel})  # fallbacks to other channels
        if others:
            ctx.doorbell.ring("dispatch", others)
        if not done.more:
            break
        if time.monotonic() > deadline:
            ctx.doorbell.ring("dispatch", [channel])
            break
    return _report(work)


# Celery ships no types: the registered tasks are Any to the type checker.
apply_events: Any = app.task(name="journey.events", bind=True, **RETRY)(_events)
fire_timers: Any = app.task(name="journey.timers", bind=True, **RETRY)(_timers)
deliver: Any = app.task(name="journey.deliver", bind=True, **RETRY)(_deliver)


def _close_context(**_: Any) -> None:
    context.close()


worker_process_shutdown.connect(_close_context, weak=False)
