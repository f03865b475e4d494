"""Consent, with proof: every change of a user's ``subscriptions.<channel>``.

Each change is a fact of its own, kept in ``consent_changes`` with when it happened, the
channel, the value before and after, how it was made (``source``) and the message it came
with: an ``identify`` that sets the trait (``event``, its messageId), a click on an
unsubscribe link (``unsubscribe_page``, ``one_click``, the message whose link it was), an
SMS reply (``sms_reply``), the admin API (``admin``). A channel that needs opt-in is only
sent to when ``subscriptions.<channel>`` is true, and that value was set by one of these,
so a recorded opt-in stands behind every such send.

Outside the event stream (links, replies, the admin API) the profile's trait is set in
the same transaction as the record, so the consent policy sees it at the next send, and
the answer says what happened: unsubscribed now, or already unsubscribed (then nothing is
written). A later ``identify`` that sets
the trait again resubscribes the user, and the same old link then unsubscribes them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import desc, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.identity import merge_traits
from engine.store.schema import ConsentChange, Identity, Profile
from engine.store.users import SqlUserBook, owner_of


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
    """Set ``subscriptions.<channel>`` to false for ``key``'s owner and record the change."""
    return set_consent(session, key, channel, False, source=source, message_id=message_id, now=now)


def set_consent(
    session: Session,
    key: str,
    channel: str,
    subscribed: bool,
    *,
    source: str,
    message_id: str | None,
    now: datetime,
) -> tuple[Consent, bool]:
    """Set ``subscriptions.<channel>`` for ``key``'s owner and record the change.

    Returns the consent as it was before, and whether anything changed (False: it already
    was so). The profile row is locked like the engine locks it, so a round applying the
    user's events waits or is waited for.
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
    if before.value is subscribed:
        return before, False
    profile.traits = merge_traits(profile.traits, {"subscriptions": {channel: subscribed}})
    profile.updated_at = now
    session.add(
        ConsentChange(
            user_key=owner,
            channel=channel,
            subscribed=subscribed,
            previous=before.value,
            source=source,
            message_id=message_id,
            changed_at=now,
        )
    )
    return before, True


@contextmanager
def consent_recorded(
    session: Session, book: SqlUserBook, keys: Iterable[str], message_id: str, now: datetime
) -> Iterator[None]:
    """Record the consent changes the ``identify`` applied inside the block makes."""
    keys = list(keys)

    def subscriptions() -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for key in keys:
            owner = book.owner(key)
            value = book.get(owner).profile.get("subscriptions")
            found[owner] = dict(value) if isinstance(value, Mapping) else {}
        return found

    before = subscriptions()
    yield
    for owner, now_set in subscriptions().items():
        was = before.get(owner, {})
        for channel in sorted(now_set.keys() | was.keys()):
            if channel in now_set and now_set[channel] != was.get(channel):
                session.add(
                    ConsentChange(
                        user_key=owner,
                        channel=channel,
                        subscribed=now_set[channel] is True,
                        previous=was.get(channel),
                        source="event",
                        message_id=message_id,
                        changed_at=now,
                    )
                )


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
