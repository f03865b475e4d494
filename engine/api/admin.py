"""The admin API: a user's profile, runs and messages; the deployed journeys.

Every route needs ``Authorization: Bearer <JOURNEY_ADMIN_TOKEN>``; without a configured
token the admin API refuses everyone. Times are ISO-8601 UTC with ``Z``.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.api.segment import ApiError
from engine.durations import iso_z
from engine.identity import anonymous_key, display_id, user_key
from engine.settings import Settings
from engine.store.database import Database
from engine.store.schema import Deployment, JourneyVersion, Message, Profile, Run
from engine.store.users import owner_of


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_z(moment)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def has_data(session: Session, key: str) -> bool:
    if session.get(Profile, key) is not None:
        return True
    for model in (Run, Message):
        found = session.scalar(select(model.user_key).where(model.user_key == key).limit(1))
        if found is not None:
            return True
    return False


def resolve_user(session: Session, user_id: str) -> str | None:
    """The key of the user ``user_id`` names: as a userId first, then as an anonymousId."""
    for key in (user_key(user_id), anonymous_key(user_id)):
        owner = owner_of(session, key)
        if has_data(session, owner):
            return owner
    return None


def user_view(session: Session, key: str, limit: int) -> dict[str, Any]:
    profile = session.get(Profile, key)
    runs = session.scalars(
        select(Run)
        .where(Run.user_key == key)
        .order_by(Run.entered_at.desc(), Run.run_id.desc())
        .limit(limit)
    )
    messages = session.scalars(
        select(Message)
        .where(Message.user_key == key)
        .order_by(Message.send_at.desc(), Message.created_at.desc(), Message.message_id.desc())
        .limit(limit)
    )
    return {
        "user_id": display_id(key),
        "key": key,
        "profile": profile.traits if profile is not None else {},
        "runs": [
            {
                "run_id": run.run_id,
                "journey": run.journey_id,
                "version": run.version,
                "status": run.status,
                "step": run.step,
                "entered_at": _iso(run.entered_at),
                "ended_at": _iso(run.ended_at),
                "converted_at": _iso(run.converted_at),
            }
            for run in runs
        ],
        "messages": [
            {
                "message_id": message.message_id,
                "journey": message.journey_id,
                "step": message.step,
                "channel": message.channel,
                "status": message.status,
                "reason": message.reason,
                "at": _iso(message.send_at),
                "content": message.content,
            }
            for message in messages
        ],
    }


def journeys_view(session: Session) -> dict[str, Any]:
    latest = session.scalar(select(func.max(Deployment.id)))
    if latest is None:
        return {"deployment": None, "journeys": []}
    deployment = session.get(Deployment, latest)
    assert deployment is not None
    deployed_at = _iso(deployment.created_at)
    # A journey deployed again unchanged keeps the version row of its first deployment,
    # so the deployment's own list says which versions it runs.
    versions = [
        version
        for journey_id, number in sorted(deployment.journeys.items())
        if (version := session.get(JourneyVersion, (journey_id, number))) is not None
    ]
    active: dict[str, int] = {
        journey_id: count
        for journey_id, count in session.execute(
            select(Run.journey_id, func.count())
            .where(Run.status == "active")
            .group_by(Run.journey_id)
        )
    }
    return {
        "deployment": {
            "id": deployment.id,
            "version": deployment.version,
            "deployed_at": deployed_at,
        },
        "journeys": [
            {
                "id": version.journey_id,
                "name": version.name,
                "version": version.version,
                "deployed_at": deployed_at,
                "active_runs": active.get(version.journey_id, 0),
            }
            for version in versions
        ],
    }


def router(db: Database, settings: Settings) -> APIRouter:
    def require_admin(request: Request) -> None:
        expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
        given = bearer_token(request.headers.get("authorization"))
        if (
            not expected
            or given is None
            or not hmac.compare_digest(given.encode(), expected.encode())
        ):
            raise ApiError(
                401,
                "unauthorized",
                "a valid admin token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="journey-admin"'},
            )

    api = APIRouter(prefix="/api", tags=["admin"], dependencies=[Depends(require_admin)])

    @api.get("/users/{user_id:path}")
    def get_user(user_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """A user's merged traits, runs and messages (newest first, at most ``limit`` each)."""
        with db.transaction() as session:
            key = resolve_user(session, user_id)
            if key is None:
                raise ApiError(404, "not_found", "no such user")
            return user_view(session, key, limit)

    @api.get("/journeys")
    def get_journeys() -> dict[str, Any]:
        """The journeys of the latest deployment, with their active run counts."""
        with db.transaction() as session:
            return journeys_view(session)

    return api
