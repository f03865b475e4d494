"""Admin API for operators: the engine's backlog, dead letters, and the audit log.

- ``GET /api/ops``: timer lag, outbox backlog, pending events, dead letters, and the depth
  of each Celery queue (Redis brokers; null otherwise, and in the embedded engine).
- ``GET /api/dead-letters`` (``?all=true`` with those replayed, ``?kind=``),
  ``GET /api/dead-letters/{id}`` (with the traceback), ``POST /api/dead-letters/{id}/replay``,
  ``POST /api/dead-letters/replay`` (every one not replayed), ``DELETE /api/dead-letters/{id}``
  (discard). Replays and discards are recorded in the audit log under the token's name.
- ``GET /api/audit`` (``?limit=&before=&action=``): the audit log, newest first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from engine.api.admin import admin_guard
from engine.api.segment import ApiError
from engine.queues import queue_depths
from engine.settings import Settings
from engine.store.audit import audit_entries, entry_json
from engine.store.backlog import backlog
from engine.store.database import Database
from engine.store.dead_letters import (
    NoSuchDeadLetter,
    dead_letter_json,
    dead_letters,
    discard,
    replay,
    waiting_ids,
)
from engine.store.schema import DeadLetter

KINDS = ("event", "timer", "message")


def _actor(request: Request) -> str:
    return str(request.state.admin)


def router(db: Database, settings: Settings, broker_url: str | None = None) -> APIRouter:
    api = APIRouter(prefix="/api", tags=["ops"], dependencies=[Depends(admin_guard(settings))])

    @api.get("/ops")
    def get_ops() -> dict[str, Any]:
        """How far behind the engine is, and how much waits in each queue."""
        with db.transaction() as session:
            figures = backlog(session, datetime.now(UTC)).as_json()
        figures["queues"] = queue_depths(broker_url)
        return figures

    @api.get("/dead-letters")
    def list_dead_letters(
        include_replayed: Annotated[
            bool, Query(alias="all", description="with those replayed")
        ] = False,
        kind: Annotated[str | None, Query(pattern="^(event|timer|message)$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Work set aside for good, newest first, with its error."""
        with db.transaction() as session:
            found = dead_letters(session, include_replayed=include_replayed, kind=kind, limit=limit)
            return {"dead_letters": [dead_letter_json(letter) for letter in found]}

    @api.get("/dead-letters/{letter_id}")
    def get_dead_letter(letter_id: int) -> dict[str, Any]:
        with db.transaction() as session:
            letter = session.get(DeadLetter, letter_id)
            if letter is None:
                raise ApiError(404, "not_found", f"no dead letter {letter_id}")
            return dead_letter_json(letter, traceback=True)

    @api.post("/dead-letters/replay")
    def replay_all(request: Request) -> dict[str, Any]:
        """Replay every dead letter not replayed yet (each in a transaction of its own)."""
        with db.transaction() as session:
            ids = waiting_ids(session)
        done = []
        for letter_id in ids:
            try:
                with db.transaction() as session:
                    done.append(replay(session, letter_id, _actor(request), datetime.now(UTC)))
            except NoSuchDeadLetter:
                continue  # discarded meanwhile
        return {
            "replayed": sum(r.replayed for r in done),
            "results": [r.as_json() for r in done],
        }

    @api.post("/dead-letters/{letter_id}/replay")
    def replay_one(letter_id: int, request: Request) -> dict[str, Any]:
        """Put the work back for the engine (409 if it cannot be: the answer says why)."""
        try:
            with db.transaction() as session:
                result = replay(session, letter_id, _actor(request), datetime.now(UTC))
        except NoSuchDeadLetter as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        if not result.replayed:
            raise ApiError(409, "not_replayable", result.note)
        return result.as_json()

    @api.delete("/dead-letters/{letter_id}")
    def discard_one(letter_id: int, request: Request) -> dict[str, Any]:
        """Delete the dead letter; its work stays failed."""
        try:
            with db.transaction() as session:
                gone = discard(session, letter_id, _actor(request), datetime.now(UTC))
        except NoSuchDeadLetter as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        return {"discarded": gone}

    @api.get("/audit")
    def get_audit(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[int | None, Query(ge=1)] = None,
        action: Annotated[str | None, Query(max_length=32)] = None,
    ) -> dict[str, Any]:
        """Who deployed, replayed, discarded (and paused...) what, newest first."""
        with db.transaction() as session:
            entries = audit_entries(session, limit=limit, before=before, action=action)
            return {"entries": [entry_json(entry) for entry in entries]}

    return api
