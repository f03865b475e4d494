"""Addresses a provider said never to send to again: a hard bounce, a spam complaint, a
number that does not exist.

Kept as a digest of the normalised address per channel (the address itself stays in the
profile, where the user's data is), with the reason and the message that revealed it.
The dispatcher looks a batch's addresses up before sending: a message to a blocked address
is suppressed with reason ``undeliverable`` and the send falls back to its next channel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.store.schema import AddressBlock

#: The suppression reason of a message to a blocked address.
UNDELIVERABLE = "undeliverable"


def normalise(channel: str, address: str) -> str:
    """One spelling per address: emails lower-cased, phone numbers as digits with ``+``."""
    text = address.strip()
    if channel == "email":
        return text.lower()
    if channel == "sms":
        return "".join(c for c in text if c.isdigit() or c == "+")
    return text


def digest(channel: str, address: str) -> str:
    return hashlib.sha256(f"{channel}\0{normalise(channel, address)}".encode()).hexdigest()


def block(
    session: Session,
    channel: str,
    address: str,
    reason: str,
    message_id: str | None,
    now: datetime,
) -> None:
    """Never send ``channel`` to ``address`` again (the first reason is kept)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = (pg_insert if postgres else sqlite_insert)(AddressBlock)
    session.execute(
        insert.values(
            digest=digest(channel, address),
            channel=channel,
            reason=reason,
            message_id=message_id,
            created_at=now,
        ).on_conflict_do_nothing()
    )


def blocked(session: Session, channel: str, addresses: Iterable[str]) -> dict[str, str]:
    """The blocked ones of ``addresses`` on ``channel``, with the reason each was blocked."""
    by_digest = {digest(channel, address): address for address in addresses}
    if not by_digest:
        return {}
    rows = session.execute(
        select(AddressBlock.digest, AddressBlock.reason).where(
            AddressBlock.digest.in_(list(by_digest))
        )
    )
    return {by_digest[found]: reason for found, reason in rows}
