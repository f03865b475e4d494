"""The admin API: a user's profile, runs and messages; the deployed journeys.

Every route needs ``Authorization: Bearer <token>`` with an admin token
(``JOURNEY_ADMIN_TOKEN``, or one of ``JOURNEY_ADMIN_TOKENS``), HTTP Basic with the token
as password (which browsers can send), or the dashboard's sign-in cookie; without a
configured token the admin API refuses everyone. Times are ISO-8601 UTC with ``Z``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.api import sessions
from engine.api.segment import ApiError, basic_password
from engine.durations import iso_z
from engine.events import unstorable_text
from engine.identity import anonymous_key, display_id, user_key
from engine.settings import Settings
from engine.store.consent import consent_history, set_consent
from engine.store.database import Database
from engine.store.lifecycle import State, apply_journey_state
from engine.store.privacy import export, forget
from engine.store.schema import (
    Deployment,
    JourneyState,
    JourneyVersion,
    Message,
    Profile,
    Run,
)
from engine.store.users import owner_of

log = logging.getLogger("journey.admin")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_z(moment)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def admin_token_of(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` or ``Basic <any user>:<token>``."""
    return bearer_token(header) or basic_password(header)


def admin_guard(settings: Settings, *, browser: bool = False) -> Callable[[Request], str]:
    """A dependency refusing requests without an admin token (or the dashboard's sign-in
    cookie, ``engine.api.sessions``); it returns the token's name, which is also left in
    ``request.state.admin``. ``browser``: the refusal asks for HTTP Basic, so a browser
    prompts for the token (as the password)."""
    challenge = 'Basic realm="journey-admin"' if browser else 'Bearer realm="journey-admin"'

    def require_admin(request: Request) -> str:
        tokens = settings.named_admin_tokens()
        name = sessions.token_name(admin_token_of(request.headers.get("authorization")), tokens)
        # The cookie alone may read; to change anything it needs the dashboard's header.
        safe = request.method in ("GET", "HEAD")
        if name is None and (
            safe or request.headers.get(sessions.CSRF_HEADER) == sessions.CSRF_VALUE
        ):
            name = sessions.verify(request.cookies.get(sessions.COOKIE), tokens, time.time())
        if name is None:
            raise ApiError(
                401,
                "unauthorized",
                "a valid admin token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": challenge},
            )
        request.state.admin = name
        return name

    return require_admin


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
    if unstorable_text(user_id) is not None:  # no such id can have been stored
        return None
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
        "consent": [
            {
                "channel": change.channel,
                "subscribed": change.subscribed,
                "previous": change.previous,
                "source": change.source,
                "message_id": change.message_id,
                "at": _iso(change.changed_at),
            }
            for change in consent_history(session, key, limit)
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
    states = {
        journey_id: state
        for journey_id, state in session.execute(
            select(JourneyState.journey_id, JourneyState.state)
        )
    }
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
                "status": states.get(version.journey_id, "running"),
            }
            for version in versions
        ],
    }


class ConsentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    subscribed: bool


def router(db: Database, settings: Settings) -> APIRouter:
    guard = Depends(admin_guard(settings))
    api = APIRouter(prefix="/api", tags=["admin"], dependencies=[guard])

    @api.get("/users/{user_id:path}/export")
    def export_user(user_id: str) -> dict[str, Any]:
        """Everything held about the user, as one JSON document (a data access request)."""
        with db.transaction() as session:
            document = export(session, user_id)
        if document is None:
            raise ApiError(404, "not_found", "no such user")
        return document

    @api.delete("/users/{user_id:path}")
    def forget_user(user_id: str) -> dict[str, Any]:
        """Erase the user's personal data everywhere (an erasure request); idempotent."""
        with db.transaction() as session:
            erasure = forget(session, user_id, datetime.now(UTC))
        log.info("erased a user on request (%d ids)", erasure.ids)
        return {"forgotten": erasure.user_key is not None, **erasure.as_json(), "user_key": None}

    @api.put("/users/{user_id:path}/consent")
    def put_consent(user_id: str, change: ConsentRequest) -> dict[str, Any]:
        """Set the user's consent to a channel (recorded with source ``admin``)."""
        with db.transaction() as session:
            key = resolve_user(session, user_id)
            if key is None:
                raise ApiError(404, "not_found", "no such user")
            before, changed = set_consent(
                session,
                key,
                change.channel,
                change.subscribed,
                source="admin",
                message_id=None,
                now=datetime.now(UTC),
            )
        return {"channel": change.channel, "subscribed": change.subscribed,
                "previous": before.value, "changed": changed}  # fmt: skip

    @api.get("/users/{user_id:path}")
    def get_user(user_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """A user's merged traits, runs and messages (newest first, at most ``limit`` each)."""
        with db.transaction() as session:
            key = resolve_user(session, user_id)
            if key is None:
                raise ApiError(404, "not_found", "no such user")
            return user_view(session, key, limit)

    @api.post("/journeys/{journey_id}/{action}")
    def change_journey(journey_id: str, action: str, request: Request) -> dict[str, Any]:
        """Pause, resume or stop a journey (see engine.store.lifecycle)."""
        states: dict[str, State] = {"pause": "paused", "resume": "active", "stop": "stopped"}
        if action not in states:
            raise ApiError(404, "not_found", "the actions are pause, resume and stop")
        actor = str(request.state.admin)
        result = apply_journey_state(db, journey_id, states[action], actor)
        if result is None:
            raise ApiError(404, "not_found", f"no deployed journey {journey_id!r}")
        changed, ended = result
        return {"journey": journey_id, "state": states[action], "changed": changed,
                "runs_ended": ended}  # fmt: skip

    @api.get("/journeys")
    def get_journeys() -> dict[str, Any]:
        """The journeys of the latest deployment, with their active run counts."""
        with db.transaction() as session:
            return journeys_view(session)

    return api
