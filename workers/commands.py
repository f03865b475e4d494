"""``journey worker``, ``journey scheduler``, ``journey api`` and ``journey stack``.

The distributed topology: API processes store events and ring doorbells; Celery workers
apply inputs and deliver messages; a scheduler rings for due timers and sweeps for
anything whose doorbell was lost. All of them share one PostgreSQL database and one
broker (``JOURNEY_BROKER_URL``). ``journey stack`` starts them all on this machine.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from engine.live.commands import deploy_directory, remember_credentials
from engine.settings import Settings

log = logging.getLogger("journey.stack")


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def multiprocess_metrics() -> None:
    """Counters of forked processes go to files a scrape sums (before anything counts)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="journey-metrics-")


def serve_metrics(settings: Settings) -> None:
    if settings.metrics_port is not None:
        from engine.metrics import exposition, serve_in_thread

        serve_in_thread(settings.metrics_port, exposition)


def run_worker(queues: Sequence[str], concurrency: int, loglevel: str = "info") -> int:
    """A Celery worker consuming ``queues`` (all of them when empty)."""
    multiprocess_metrics()
    serve_metrics(Settings())
    from engine.queues import queue_names
    from workers import app

    chosen = list(queues) or list(queue_names())
    unknown = sorted(set(chosen) - set(queue_names()))
    if unknown:
        print(f"unknown queue(s): {', '.join(unknown)}; known: {', '.join(queue_names())}")
        return 2
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(chosen),
            "--concurrency",
            str(concurrency),
            "--loglevel",
            loglevel,
            "--hostname",
            f"journey-{secrets.token_hex(3)}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def run_scheduler() -> int:
    """The periodic jobs (``workers.scheduler``), until SIGINT or SIGTERM."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    from engine.store.database import Database
    from engine.store.stat_counters import FOLD_EVERY
    from workers import tasks
    from workers.context import make_doorbell
    from workers.scheduler import Sweeper

    _logging()
    settings = Settings()
    serve_metrics(settings)
    db = Database(settings.database_url)
    doorbell, redis = make_doorbell(settings, tasks.publish)
    sweeper = Sweeper(db, doorbell, retention=settings.event_retention)
    scheduler = BlockingScheduler(timezone=UTC)
    every = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 5}
    scheduler.add_job(sweeper.due_timers, "interval", seconds=0.2, **every)
    scheduler.add_job(sweeper.sweep, "interval", seconds=2, **every)
    scheduler.add_job(sweeper.deployments, "interval", seconds=5, **every)
    scheduler.add_job(sweeper.fold_counters, "interval", seconds=FOLD_EVERY, **every)
    scheduler.add_job(sweeper.purge, "interval", hours=1, next_run_time=datetime.now(UTC), **every)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("scheduler running on %s", db.url.split("@")[-1])
    try:
        sweeper.deployments()
        scheduler.start()
    finally:
        db.dispose()
        if redis is not None:
            redis.close()
    return 0


def run_api(host: str | None, port: int | None, workers: int) -> int:
    """The HTTP API in ``workers`` processes; ingest rings the ``events`` doorbell."""
    import uvicorn

    from engine.api.logs import log_config

    _logging()
    multiprocess_metrics()
    settings = Settings()
    made_up = remember_credentials(settings)
    for name, value in made_up.items():  # the server processes read them from the environment
        os.environ[name] = value
    uvicorn.run(
        "workers.api:create",
        factory=True,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        workers=workers,
        log_level="warning",
        log_config=log_config(),
    )
    return 0


def run_stack(
    journeys_dir: Path, templates: Path | None, api_workers: int, workers: int, flower: bool
) -> int:
    """Deploy, then run the API, ``workers`` Celery workers, the scheduler and Flower here."""
    if deploy_directory(journeys_dir, templates) != 0:
        return 1
    settings = Settings()
    env = dict(os.environ)
    env.update(remember_credentials(settings))
    journey = [sys.executable, "-m", "engine.cli"]
    commands = [
        [*journey, "api", "--workers", str(api_workers)],
        *([*journey, "worker", "--concurrency", "2"] for _ in range(workers)),
        [*journey, "scheduler"],
    ]
    if flower:
        commands.append([sys.executable, "-m", "celery", "-A", "workers", "flower"])
    children = [subprocess.Popen(command, env=env) for command in commands]
    port = settings.port
    print(
        f"\njourney stack: API at http://{settings.host}:{port}, {workers} worker(s), "
        f"the scheduler{', Flower at http://localhost:5555' if flower else ''}\n"
        f"  write key    {env['JOURNEY_WRITE_KEYS'].split(',')[0]}\n"
        f"  admin token  {env['JOURNEY_ADMIN_TOKEN']}\n",
        flush=True,
    )
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.5)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0 if stopping else 1
