"""Consent changes made outside the event stream: a click on an unsubscribe link.

Such a change is a fact of its own, kept in ``consent_changes`` with when it happened,
the channel, the value before and after, how it was made and the message whose link was
used. In the same transaction the profile's ``subscriptions.<channel>`` trait is set, so
the consent policy sees it at the next send. The answer says what happened: unsubscribed
now, or already unsubscribed (then nothing is written). A later ``identify`` that sets
the trait again resubscribes the user, and the same old link then unsubscribes them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import desc, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.identity import merge_traits
from engine.store.schema import ConsentChange, Identity, Profile
from engine.store.users import owner_of


@dataclass(frozen=True, slots=True)
class Consent:
    """A user's consent to one channel as the profile holds it, and the profile's locale."""

    user_key: str  # the key that owns the profile now
    value: Any  # ``subscriptions.<channel>``: True, False, or None when unset
    locale: Any

    @property
    def unsubscribed(self) -> bool:
        return self.value is False


def _consent(owner: str, traits: Mapping[str, Any], channel: str) -> Consent:
    subscriptions = traits.get("subscriptions")
    value = subscriptions.get(channel) if isinstance(subscriptions, Mapping) else None
    return Consent(owner, value, traits.get("locale"))


def read_consent(session: Session, key: str, channel: str) -> Consent:
    """What the profile of ``key``'s owner says about ``channel``, without changing it."""
    owner = owner_of(session, key)
    profile = session.get(Profile, owner)
    return _consent(owner, profile.traits if profile is not None else {}, channel)


def unsubscribe(
    session: Session,
    key: str,
    channel: str,
    *,
    source: str,
    message_id: str | None,
    now: datetime,
) -> tuple[Consent, bool]:
    """Set ``subscriptions.<channel>`` to false for ``key``'s owner and record the change.

    Returns the consent as it was before, and whether anything changed (False: the user
    was already unsubscribed). The profile row is locked like the engine locks it, so a
    batch applying the user's events waits or is waited for.
    """
    owner = owner_of(session, key)
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = pg_insert(Profile) if postgres else sqlite_insert(Profile)
    session.execute(
        insert.values(
            user_key=owner, traits={}, created_at=now, updated_at=now
        ).on_conflict_do_nothing()
    )
    query = select(Profile).where(Profile.user_key == owner)
    profile = session.scalars(query.with_for_update() if postgres else query).one()
    before = _consent(owner, profile.traits, channel)
    if before.unsubscribed:
        return before, False
    profile.traits = merge_traits(profile.traits, {"subscriptions": {channel: False}})
    profile.updated_at = now
    session.add(
        ConsentChange(
            user_key=owner,
            channel=channel,
            subscribed=False,
            previous=before.value,
            source=source,
            message_id=message_id,
            changed_at=now,
        )
    )
    return before, True


def consent_history(session: Session, key: str, limit: int) -> list[ConsentChange]:
    """The consent changes of the user ``key`` owns (and of the ids merged into it), newest
    first."""
    keys = [key, *session.scalars(select(Identity.alias_key).where(Identity.owner_key == key))]
    return list(
        session.scalars(
            select(ConsentChange)
            .where(ConsentChange.user_key.in_(keys))
            .order_by(desc(ConsentChange.changed_at), desc(ConsentChange.id))
            .limit(limit)
        )
    )
