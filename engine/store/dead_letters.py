"""Dead letters: listing the work that failed for good, replaying it, discarding it.

The services set work aside in ``dead_letters`` (``engine.services.work.dead_letter``):
an event (``ref`` its ``seq``; the event row is left ``failed``), a timer (``ref`` its id;
the row is deleted, and the payload keeps ``run_id``, ``user_key`` and ``due_at``) or a
message (``ref`` its id; left ``failed``). Replaying puts the work back where the engine
finds it: the event ``pending`` again, the timer re-inserted (due at once, in the
partition of whoever owns its user now), the message ``pending`` with no tries, so the
next round applies or sends it like any other. Nothing is replayed twice: a dead letter
is marked ``replayed_at``, and work that is no longer failed is left alone.

Each replay and discard is recorded in the audit log, in its own transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.durations import iso_z
from engine.store.audit import record_audit
from engine.store.partitions import partition_of
from engine.store.schema import DeadLetter, Message, Run, StoredEvent, Timer
from engine.store.users import owner_of


class NoSuchDeadLetter(LookupError):
    """No dead letter has that id (discarded already, or never was)."""


@dataclass(frozen=True)
class Replay:
    """What replaying one dead letter did."""

    id: int
    kind: str
    ref: str
    replayed: bool
    note: str  # what was put back, or why nothing was

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "ref": self.ref,
            "replayed": self.replayed,
            "note": self.note,
        }


def dead_letters(
    session: Session, *, include_replayed: bool = False, kind: str | None = None, limit: int = 100
) -> Sequence[DeadLetter]:
    """The newest first."""
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if not include_replayed:
        query = query.where(DeadLetter.replayed_at.is_(None))
    if kind is not None:
        query = query.where(DeadLetter.kind == kind)
    return session.scalars(query).all()


def waiting_ids(session: Session) -> list[int]:
    """Every dead letter not replayed yet, oldest first."""
    query = select(DeadLetter.id).where(DeadLetter.replayed_at.is_(None)).order_by(DeadLetter.id)
    return list(session.scalars(query))


def count_waiting(session: Session) -> int:
    query = select(func.count()).select_from(DeadLetter).where(DeadLetter.replayed_at.is_(None))
    return int(session.scalar(query) or 0)


def dead_letter_json(letter: DeadLetter, *, traceback: bool = False) -> dict[str, Any]:
    payload = dict(letter.payload or {})
    trace = payload.pop("traceback", None)
    found: dict[str, Any] = {
        "id": letter.id,
        "kind": letter.kind,
        "ref": letter.ref,
        "error": letter.error,
        "payload": payload,
        "created_at": iso_z(letter.created_at),
        "replayed_at": iso_z(letter.replayed_at) if letter.replayed_at else None,
    }
    if traceback:
        found["traceback"] = trace
    return found


def _letter(session: Session, letter_id: int) -> DeadLetter:
    letter = session.get(DeadLetter, letter_id, with_for_update=True)
    if letter is None:
        raise NoSuchDeadLetter(f"no dead letter {letter_id}")
    return letter


def _replay_event(session: Session, ref: str) -> tuple[bool, str]:
    event = session.get(StoredEvent, int(ref)) if ref.isdigit() else None
    if event is None:
        return False, f"event {ref} is gone"
    if event.status != "failed":
        return False, f"event {ref} is {event.status}, not failed"
    event.status, event.processed_at = "pending", None
    return True, f"event {ref} is pending again"


def _replay_timer(session: Session, ref: str, payload: dict[str, Any]) -> tuple[bool, str]:
    run_id, key, due = payload.get("run_id"), payload.get("user_key"), payload.get("due_at")
    if not (isinstance(run_id, str) and isinstance(key, str) and isinstance(due, str)):
        return False, f"timer {ref}: its dead letter lacks run_id, user_key or due_at"
    if session.get(Timer, ref) is not None:
        return False, f"timer {ref} is set already"
    run = session.get(Run, run_id)
    if run is None:
        return False, f"run {run_id} is gone"
    owner = owner_of(session, run.user_key)  # the user may have been merged since
    session.add(
        Timer(
            timer_id=ref,
            # Orders timers due at the same instant; any increasing number will do.
            seq=time.time_ns(),
            run_id=run_id,
            user_key=owner,
            due_at=datetime.fromisoformat(due),
            partition=partition_of(owner),
        )
    )
    return True, f"timer {ref} is set again (run {run_id} is {run.status})"


def _replay_message(session: Session, ref: str, now: datetime) -> tuple[bool, str]:
    message = session.get(Message, ref)
    if message is None:
        return False, f"message {ref} is gone"
    if message.status != "failed":
        return False, f"message {ref} is {message.status}, not failed"
    message.status, message.tries, message.reason = "pending", 0, None
    message.claimed_by, message.claimed_until, message.updated_at = None, None, now
    return True, f"message {ref} is pending again"


def replay(session: Session, letter_id: int, actor: str, now: datetime) -> Replay:
    """Put the dead letter's work back for the engine, mark it replayed, and record who did."""
    letter = _letter(session, letter_id)
    if letter.replayed_at is not None:
        done, note = False, f"replayed already at {iso_z(letter.replayed_at)}"
    elif letter.kind == "event":
        done, note = _replay_event(session, letter.ref)
    elif letter.kind == "timer":
        done, note = _replay_timer(session, letter.ref, letter.payload or {})
    elif letter.kind == "message":
        done, note = _replay_message(session, letter.ref, now)
    else:
        done, note = False, f"unknown kind {letter.kind!r}"
    if done:
        letter.replayed_at = now
        detail = {"kind": letter.kind, "ref": letter.ref, "note": note}
        record_audit(session, "replay", f"dead_letter:{letter.id}", actor, detail, at=now)
    return Replay(letter.id, letter.kind, letter.ref, done, note)


def discard(session: Session, letter_id: int, actor: str, now: datetime) -> dict[str, Any]:
    """Delete the dead letter (its work stays failed), and record who did."""
    letter = _letter(session, letter_id)
    found = dead_letter_json(letter)
    session.delete(letter)
    detail = {"kind": letter.kind, "ref": letter.ref, "error": letter.error[:500]}
    record_audit(session, "discard", f"dead_letter:{letter.id}", actor, detail, at=now)
    return found
