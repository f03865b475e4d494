"""Pausing, resuming and stopping a journey, whatever version its runs are on.

- **Paused**: the journey admits no one (its trigger is ignored) and its runs' messages
  are held: they wait in the outbox, due, until the journey resumes. Runs still move
  through their waits and branches, so nothing is lost and nothing piles up in timers.
- **Resumed**: new runs are admitted again and the held messages go out.
- **Stopped**: the journey admits no one and every run of it ends now (status
  ``stopped``): its timers are deleted and its messages not yet sent are cancelled. A
  stopped journey can be resumed: it admits people again; the stopped runs stay ended.

Every engine process reads the states at its next round. Runs are stopped user by user,
each under the user's lock, in batches, so no round applying a user's events races it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from engine.store.audit import record_audit
from engine.store.database import Database
from engine.store.schema import JourneyState, JourneyVersion, Message, Run, Timer
from engine.store.users import SqlUserBook

State = Literal["active", "paused", "stopped"]
STOPPED = "stopped"
BATCH = 200


def journey_state(session: Session, journey_id: str) -> State:
    row = session.get(JourneyState, journey_id)
    return "active" if row is None else row.state  # type: ignore[return-value]


def set_state(session: Session, journey_id: str, state: State, actor: str, now: datetime) -> bool:
    """Record ``state`` for ``journey_id``; whether it changed."""
    row = session.get(JourneyState, journey_id, with_for_update=True)
    before = "active" if row is None else row.state
    if before == state:
        return False
    if state == "active":
        session.delete(row)
    elif row is None:
        session.add(JourneyState(journey_id=journey_id, state=state, changed_at=now, actor=actor))
    else:
        row.state, row.changed_at, row.actor = state, now, actor
    return True


def stop_runs(db: Database, journey_id: str, now: datetime) -> int:
    """End every active run of ``journey_id``; how many. Batches of users, each locked."""
    ended = 0
    while True:
        with db.transaction() as session:
            keys = list(
                session.scalars(
                    select(Run.user_key)
                    .where(Run.journey_id == journey_id, Run.status == "active")
                    .distinct()
                    .limit(BATCH)
                )
            )
            if not keys:
                return ended
            book = SqlUserBook(session, now, timedelta(0))
            book.prefetch(keys)  # the users' locks; their owners are these keys
            runs = list(
                session.scalars(
                    select(Run.run_id).where(
                        Run.journey_id == journey_id,
                        Run.status == "active",
                        Run.user_key.in_(keys),
                    )
                )
            )
            session.execute(
                update(Run)
                .where(Run.run_id.in_(runs))
                .values(status=STOPPED, step=None, ended_at=now, goal_until=None, updated_at=now)
            )
            session.execute(delete(Timer).where(Timer.run_id.in_(runs)))
            session.execute(
                update(Message)
                .where(
                    Message.run_id.in_(runs),
                    Message.status.in_(("scheduled", "pending", "sending")),
                )
                .values(
                    status="cancelled",
                    reason="journey stopped",
                    claimed_by=None,
                    claimed_until=None,
                    updated_at=now,
                )
            )
            ended += len(runs)


def apply_journey_state(
    db: Database, journey_id: str, state: State, actor: str
) -> tuple[bool, int] | None:
    """Set the state of a deployed journey (stopping ends its runs); whether it changed
    and how many runs ended, or None when no journey of that id was ever deployed."""
    now = datetime.now(UTC)
    with db.transaction() as session:
        deployed = select(JourneyVersion.journey_id).where(JourneyVersion.journey_id == journey_id)
        if session.scalar(deployed.limit(1)) is None:
            return None
        changed = set_state(session, journey_id, state, actor, now)
        if changed:
            action = {"active": "resume", "paused": "pause", "stopped": "stop"}[state]
            record_audit(session, action, journey_id, actor, at=now)
    ended = stop_runs(db, journey_id, now) if state == STOPPED else 0
    return changed, ended
