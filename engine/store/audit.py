"""The audit log: every operator action that changes what the engine does, with who and
when. Deploys, dead-letter replays and discards are recorded here, in the transaction
of the action itself (an action that rolls back leaves no entry, and none is missing).

"Who" is the admin token's name (``JOURNEY_ADMIN_TOKENS``) for the admin API and the
dashboard, and the operating-system user for the ``journey`` command.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.durations import iso_z
from engine.store.schema import AuditEntry


def record_audit(
    session: Session,
    action: str,
    target: str,
    actor: str,
    detail: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> AuditEntry:
    """Record that ``actor`` did ``action`` (deploy, replay, discard, pause...) on
    ``target`` (a deployment, a dead letter, a journey), in ``session``'s transaction."""
    entry = AuditEntry(
        at=at or datetime.now(UTC), actor=actor[:128], action=action, target=target, detail=detail
    )
    session.add(entry)
    return entry


def os_actor() -> str:
    """The operating-system user running a ``journey`` command, as the audit log names it."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry, no LOGNAME: a container's anonymous uid
        return "os:unknown"


def audit_entries(
    session: Session, *, limit: int = 100, before: int | None = None, action: str | None = None
) -> Sequence[AuditEntry]:
    """The newest entries first; ``before`` an id pages back."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return session.scalars(query).all()


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso_z(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
    }
