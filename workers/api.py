"""The HTTP API of a distributed deployment: ingest rings the ``events`` doorbell.

``journey api`` serves :func:`create` with uvicorn, in as many processes as asked; each
process stores events in the database and, once they are committed, rings the doorbell
for the partitions they went to. The API never applies anything itself.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from fastapi import FastAPI

from engine.api.app import create_app
from engine.settings import Settings
from engine.store.database import Database
from workers import tasks
from workers.context import make_doorbell

log = logging.getLogger("journey.api")


def create() -> FastAPI:
    """The API app of one server process (an app factory for uvicorn)."""
    settings = Settings()
    db = Database(settings.database_url)
    doorbell, _ = make_doorbell(settings, tasks.publish)

    def rung(partitions: Collection[int]) -> None:
        doorbell.ring("events", list(partitions))

    return create_app(db, settings, on_ingest=rung, broker_url=settings.broker_url)
