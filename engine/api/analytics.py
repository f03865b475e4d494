"""Admin API for marketers: journey reports, journey graphs and a user's timeline.

- ``GET /api/stats``: one line per deployed journey (entered, active, sent, converted...).
- ``GET /api/journeys/{id}/stats?version=&recount=``: the full report (``engine.analytics``): the
  funnel by step, conversions, attribution, split arms. ``version`` is a version, or
  ``all``; by default the version deployed now.
- ``GET /api/journeys/{id}/graph?version=``: the steps and edges, for drawing.
- ``GET /api/users/{id}/timeline``: the user's events, runs and messages, newest first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.analytics.deployed import (
    UnknownJourney,
    deployed_reports,
    journey_report,
    shape_of,
)
from engine.api.admin import admin_guard, resolve_user
from engine.api.segment import ApiError
from engine.durations import iso_z
from engine.identity import display_id
from engine.settings import Settings
from engine.store.database import Database
from engine.store.deployments import DeployedCatalog
from engine.store.schema import Identity, Message, Run, StoredEvent

VersionQuery = Annotated[str | None, Query(max_length=64, description="a version, or all")]


def timeline(session: Session, key: str, limit: int) -> list[dict[str, Any]]:
    """The user's events (under every id merged into them), runs and messages, newest first."""
    keys = [key, *session.scalars(select(Identity.alias_key).where(Identity.owner_key == key))]
    # Sorted by time, then (same instant) in the order things happen: the event, the
    # run's entry, its message, its conversion, its end.
    items: list[tuple[datetime, tuple[int, int], dict[str, Any]]] = []
    events = session.scalars(
        select(StoredEvent)
        .where(StoredEvent.user_key.in_(keys))
        .order_by(StoredEvent.received_at.desc(), StoredEvent.seq.desc())
        .limit(limit)
    )
    for event in events:
        payload = event.payload or {}
        name = payload.get("event") or payload.get("name")
        items.append(
            (
                event.received_at,
                (0, event.seq),
                {
                    "kind": "event",
                    "at": iso_z(event.received_at),
                    "type": event.type,
                    "name": name if isinstance(name, str) else None,
                    "message_id": event.message_id,
                    "status": event.status,
                    "as": display_id(event.user_key),
                },
            )
        )
    runs = session.scalars(
        select(Run).where(Run.user_key == key).order_by(Run.entered_at.desc()).limit(limit)
    )
    for run in runs:
        facts = [("entered", run.entered_at), ("converted", run.converted_at)]
        facts.append((run.status, run.ended_at))
        for rank, (what, moment) in enumerate(facts):
            if moment is None:
                continue
            items.append(
                (
                    moment,
                    (1 + 2 * rank, 0),
                    {
                        "kind": "run",
                        "at": iso_z(moment),
                        "what": what,
                        "journey": run.journey_id,
                        "version": run.version,
                        "run_id": run.run_id,
                        "step": run.step if what == "entered" else None,
                    },
                )
            )
    messages = session.scalars(
        select(Message)
        .where(Message.user_key == key)
        .order_by(Message.send_at.desc(), Message.created_at.desc())
        .limit(limit)
    )
    for message in messages:
        items.append(
            (
                message.send_at,
                (2, 0),
                {
                    "kind": "message",
                    "at": iso_z(message.send_at),
                    "journey": message.journey_id,
                    "step": message.step,
                    "channel": message.channel,
                    "status": message.status,
                    "reason": message.reason,
                    "message_id": message.message_id,
                },
            )
        )
    items.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [item for _, _, item in items[:limit]]


def router(db: Database, settings: Settings) -> APIRouter:
    api = APIRouter(
        prefix="/api", tags=["analytics"], dependencies=[Depends(admin_guard(settings))]
    )
    catalog = DeployedCatalog(db)

    @api.get("/stats")
    def get_summary() -> dict[str, Any]:
        """One line per deployed journey, in the version deployed now."""
        now = datetime.now(UTC)
        with db.transaction() as session:
            reports = deployed_reports(session, catalog, now)
        return {"at": iso_z(now), "journeys": [report.summary() for report in reports]}

    @api.get("/journeys/{journey_id}/stats")
    def get_stats(
        journey_id: str, version: VersionQuery = None, recount: bool = False
    ) -> dict[str, Any]:
        """The journey's funnel, conversions, attribution and split arms (``recount``:
        counted afresh from the runs and messages, not from the maintained counters)."""
        now = datetime.now(UTC)
        with db.transaction() as session:
            try:
                report = journey_report(session, catalog, journey_id, now, version, recount)
            except UnknownJourney as exc:
                raise ApiError(404, "not_found", str(exc)) from None
        return report.as_json()

    @api.get("/journeys/{journey_id}/graph")
    def get_graph(journey_id: str, version: VersionQuery = None) -> dict[str, Any]:
        """The journey's steps (kind, channels, what each waits for or sends) and edges."""
        with db.transaction() as session:
            try:
                return shape_of(session, catalog, journey_id, version).as_json()
            except UnknownJourney as exc:
                raise ApiError(404, "not_found", str(exc)) from None

    @api.get("/users/{user_id:path}/timeline")
    def get_timeline(
        user_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 200
    ) -> dict[str, Any]:
        """The user's events, runs and messages in one list, newest first."""
        with db.transaction() as session:
            key = resolve_user(session, user_id)
            if key is None:
                raise ApiError(404, "not_found", "no such user")
            return {"user_id": display_id(key), "key": key, "items": timeline(session, key, limit)}

    return api
