"""What providers report after a message left: delivered, failed, bounced, complained about.

A report names its message by our message id (which providers carry back: Aliyun's
``out_id``) or by the provider's own id (Twilio's ``MessageSid``). It updates the message's
status (``delivered``, ``failed``, ``bounced``) and ``reported_at``; the run moved on when
the message was sent, so a report changes no run. A report that says the address is gone
for good (a hard bounce, a complaint, an unknown number) blocks that address on that
channel: later sends to it are suppressed as ``undeliverable`` and fall back.

Reports arrive late, twice, or out of order: a report about a message that is not sent
yet, or one that would take a delivered message back to merely sent, changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.messages import address_of
from engine.store.address_blocks import block
from engine.store.schema import Message, Profile
from engine.store.users import owner_of

log = logging.getLogger("journey.receipts")

Outcome = Literal["delivered", "failed", "bounced", "complaint"]
#: Statuses a report may change: the message left us.
REPORTABLE = ("sent", "delivered", "failed", "bounced")


@dataclass(frozen=True, slots=True)
class Report:
    """One provider report about one message."""

    outcome: Outcome
    message_id: str | None = None  # ours, where the provider carries it back
    provider: str | None = None  # with ``provider_message_id``, where it does not
    provider_message_id: str | None = None
    detail: str = ""  # the provider's code or words, kept as the message's reason
    permanent: bool = False  # the address is gone for good (a hard bounce)
    address: str | None = None  # the address the provider reported on, if it says


def _find(session: Session, report: Report) -> Message | None:
    if report.message_id:
        found = session.get(Message, report.message_id, with_for_update=_postgres(session))
        if found is not None:
            return found
    if report.provider and report.provider_message_id:
        query = select(Message).where(
            Message.provider == report.provider,
            Message.provider_message_id == report.provider_message_id,
        )
        return session.scalars(query.with_for_update() if _postgres(session) else query).first()
    return None


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def record_reports(
    session: Session,
    reports: Iterable[Report],
    now: datetime,
    outcomes: list[tuple[str, str, str | None]] | None = None,
) -> int:
    """Apply ``reports``; how many messages they changed. Each change is added to
    ``outcomes`` as (channel, status, reason)."""
    changed = 0
    for report in reports:
        message = _find(session, report)
        if message is None:
            log.info("a %s report names no message of ours", report.outcome)
            continue
        if message.status not in REPORTABLE:
            continue  # not sent (yet): nothing to report on
        if report.outcome == "delivered" and message.status != "sent":
            continue  # a late "delivered" never undoes a bounce or a failure
        status = "delivered" if report.outcome == "complaint" else report.outcome
        message.status, message.reported_at, message.updated_at = status, now, now
        plain = None if report.outcome == "delivered" else report.outcome
        message.reason = report.detail or plain
        if report.outcome == "complaint" or (report.permanent and status != "delivered"):
            address = report.address or _address(session, message)
            if address is not None:
                why = "complaint" if report.outcome == "complaint" else f"{status}: {report.detail}"
                block(session, message.channel, address, why, message.message_id, now)
        if outcomes is not None:
            outcomes.append((message.channel, status, message.reason))
        changed += 1
    return changed


def _address(session: Session, message: Message) -> str | None:
    """The address the profile holds for the message's channel now."""
    profile = session.get(Profile, owner_of(session, message.user_key))
    return address_of(message.channel, profile.traits) if profile is not None else None
