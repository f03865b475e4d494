"""A user's rights over their data: erase it (``forget``), and get all of it (``export``).

**Forget** erases, in one transaction under the user's lock, everything personal the
engine holds about the user and every id merged into them: the profile, the identity
links, the payloads of their stored events, the rendered contents of their messages, and
the payloads of dead letters about them. Runs in flight end (status ``forgotten``: not
an exit, so funnels count what happened before), their timers are deleted, and messages
not yet sent are cancelled, a message some dispatcher has already claimed included (its
claim is revoked; the dispatcher checks just before calling the provider). Runs, messages
and events stay as rows under a pseudonym (``forgotten:<digest>``), so counts, funnels
and conversions do not change. Consent changes stay too, under the pseudonym: they are
the proof that what was sent was consented to.

Each id gets a tombstone: events that arrive later under it are dropped (and counted),
so a user's SDK that keeps sending cannot silently rebuild the profile, until an
``identify`` arrives that carries new consent (a ``subscriptions`` trait set to true for
some channel): a person who opts in again is a new start.

Forgetting twice changes nothing the second time.

**Export** returns one JSON document of everything held about the user (GDPR article 20,
PIPL article 45): profile, ids, consents with their history, events, runs, messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.durations import iso_z
from engine.identity import anonymous_key, display_id, user_key
from engine.store.consent import consent_history
from engine.store.schema import (
    ConsentChange,
    DeadLetter,
    Entry,
    Forgotten,
    Identity,
    Message,
    Profile,
    Run,
    StoredEvent,
    Timer,
)
from engine.store.users import SqlUserBook, owner_of

#: Message statuses that mean "not sent yet": a forget cancels them.
UNSENT = ("scheduled", "pending", "sending")
FORGOTTEN = "forgotten"


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def pseudonym(key: str) -> str:
    """The key rows of an erased user are kept under."""
    return f"{FORGOTTEN}:{key_digest(key)[:24]}"


def find_owner(session: Session, user_id: str) -> str | None:
    """The key of the user ``user_id`` names: as a userId first, then as an anonymousId
    (the first that has any data)."""
    for key in (user_key(user_id), anonymous_key(user_id)):
        owner = owner_of(session, key)
        if session.get(Profile, owner) is not None:
            return owner
        for model in (Run, Message):
            if session.scalar(select(model.user_key).where(model.user_key == owner).limit(1)):
                return owner
    return None


def all_keys(session: Session, owner: str) -> list[str]:
    """``owner`` and every id merged into it."""
    aliases = session.scalars(select(Identity.alias_key).where(Identity.owner_key == owner))
    return sorted({owner, *aliases})


@dataclass(frozen=True)
class Erasure:
    """What a forget did."""

    user_key: str | None
    ids: int = 0
    runs_ended: int = 0
    messages_cancelled: int = 0
    messages_erased: int = 0
    events_erased: int = 0
    dead_letters_erased: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def forget(session: Session, user_id: str, now: datetime) -> Erasure:
    """Erase the user ``user_id`` names (see the module's docstring); idempotent."""
    owner = find_owner(session, user_id)
    if owner is None:
        tombstone(session, [user_key(user_id), anonymous_key(user_id)], now)
        return Erasure(None)
    book = SqlUserBook(session, now, timedelta(0))
    book.prefetch([owner])  # the user's lock: no round applies anything to them meanwhile
    keys = all_keys(session, owner)
    alias = pseudonym(owner)
    seqs = [str(s) for s in session.scalars(select(StoredEvent.seq).where(_of(StoredEvent, keys)))]
    message_ids = list(session.scalars(select(Message.message_id).where(_of(Message, keys))))
    timer_ids = list(session.scalars(select(Timer.timer_id).where(_of(Timer, keys))))

    ended = _count(
        session,
        update(Run)
        .where(_of(Run, keys), Run.status == "active")
        .values(status=FORGOTTEN, step=None, ended_at=now, updated_at=now),
    )
    for run in session.scalars(select(Run).where(_of(Run, keys))):
        run.state, run.goal_until, run.user_key = _scrubbed(run.state), None, alias
    cancelled = _count(
        session,
        update(Message)
        .where(_of(Message, keys), Message.status.in_(UNSENT))
        .values(status="cancelled", reason=FORGOTTEN, claimed_by=None, claimed_until=None),
    )
    erased = _count(
        session,
        update(Message)
        .where(_of(Message, keys))
        .values(content=None, user_key=alias, updated_at=now),
    )
    events = _count(
        session,
        update(StoredEvent)
        .where(_of(StoredEvent, keys))
        .values(payload={}, user_id=None, anonymous_id=None, user_key=alias),
    )
    session.execute(
        update(StoredEvent)
        .where(StoredEvent.user_key == alias, StoredEvent.status == "pending")
        .values(status="dropped", processed_at=now)
    )
    session.execute(delete(Timer).where(Timer.timer_id.in_(timer_ids)))
    session.execute(delete(Entry).where(_of(Entry, keys)))
    session.execute(
        delete(Identity).where(or_(Identity.owner_key == owner, Identity.alias_key.in_(keys)))
    )
    session.execute(delete(Profile).where(Profile.user_key.in_(keys)))
    session.execute(  # the proof of consent stays, under the pseudonym
        update(ConsentChange).where(ConsentChange.user_key.in_(keys)).values(user_key=alias)
    )
    dead = _count(
        session,
        update(DeadLetter)
        .where(DeadLetter.ref.in_([*seqs, *message_ids, *timer_ids]))
        .values(payload=None, error="erased on the user's request"),
    )
    _rename(session, alias, message_ids)
    tombstone(session, keys, now)
    return Erasure(owner, len(keys), ended, cancelled, erased, events, dead)


def _rename(session: Session, alias: str, message_ids: list[str]) -> None:
    """Give the erased user's runs and messages ids of their own: theirs were derived from
    the user id (anyone knowing it could find the rows again), and a user who comes back
    under the same id starts over with the same ids."""

    def new_id(prefix: str, old: str) -> str:
        return prefix + hashlib.sha256(f"{alias}\0{old}".encode()).hexdigest()[:24]

    session.flush()  # the scrubbed runs are written under their old ids first
    for old in list(session.scalars(select(Run.run_id).where(Run.user_key == alias))):
        new = new_id("run_", old)
        session.execute(update(Run).where(Run.run_id == old).values(run_id=new))
        session.execute(update(Message).where(Message.run_id == old).values(run_id=new))
    for old in message_ids:
        new = new_id("msg_", old)
        session.execute(update(Message).where(Message.message_id == old).values(message_id=new))
        session.execute(update(DeadLetter).where(DeadLetter.ref == old).values(ref=new))
        session.execute(
            update(ConsentChange).where(ConsentChange.message_id == old).values(message_id=new)
        )


def _count(session: Session, statement: Any) -> int:
    """How many rows an UPDATE changed."""
    return int(getattr(session.execute(statement), "rowcount", 0) or 0)


def _of(model: Any, keys: Sequence[str]) -> Any:
    return model.user_key.in_(keys)


def _scrubbed(state: Mapping[str, Any]) -> dict[str, Any]:
    """A run's state without the events' data (their names stay: what the run did)."""

    def name_only(event: Any) -> dict[str, Any]:
        return {"event": event.get("event")} if isinstance(event, Mapping) else {}

    return {
        "visits": state.get("visits", {}),
        "waiting": None,
        "trigger": name_only(state.get("trigger")),
        "event": name_only(state.get("event")),
    }


# -- tombstones --------------------------------------------------------------------------


def tombstone(session: Session, keys: Iterable[str], now: datetime) -> None:
    rows = [{"digest": key_digest(k), "forgotten_at": now, "dropped": 0} for k in set(keys)]
    if not rows:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = (pg_insert if postgres else sqlite_insert)(Forgotten)
    session.execute(insert.values(rows).on_conflict_do_nothing())


def forgotten_among(session: Session, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` belong to erased users."""
    by_digest = {key_digest(k): k for k in set(keys)}
    if not by_digest:
        return set()
    found = session.scalars(select(Forgotten.digest).where(Forgotten.digest.in_(list(by_digest))))
    return {by_digest[d] for d in found}


def revive(session: Session, keys: Iterable[str]) -> None:
    """New consent arrived for ``keys``: their tombstones go."""
    digests = [key_digest(k) for k in set(keys)]
    session.execute(delete(Forgotten).where(Forgotten.digest.in_(digests)))


def count_dropped(session: Session, keys: Iterable[str]) -> None:
    digests = [key_digest(k) for k in set(keys)]
    session.execute(
        update(Forgotten).where(Forgotten.digest.in_(digests)).values(dropped=Forgotten.dropped + 1)
    )


def brings_consent(traits: Mapping[str, Any]) -> bool:
    """An ``identify``'s traits grant consent to some channel."""
    subscriptions = traits.get("subscriptions")
    return isinstance(subscriptions, Mapping) and any(v is True for v in subscriptions.values())


# -- export ------------------------------------------------------------------------------


def export(session: Session, user_id: str) -> dict[str, Any] | None:
    """Everything held about the user ``user_id`` names, as one JSON-ready document."""
    owner = find_owner(session, user_id)
    if owner is None:
        return None
    keys = all_keys(session, owner)
    profile = session.get(Profile, owner)
    traits = dict(profile.traits) if profile is not None else {}
    subscriptions = traits.get("subscriptions")
    events = session.scalars(
        select(StoredEvent).where(_of(StoredEvent, keys)).order_by(StoredEvent.seq)
    )
    runs = session.scalars(select(Run).where(_of(Run, keys)).order_by(Run.entered_at))
    messages = session.scalars(
        select(Message).where(_of(Message, keys)).order_by(Message.created_at)
    )
    return {
        "user_id": display_id(owner),
        "ids": [
            {"kind": "userId" if k.startswith("user:") else "anonymousId", "id": display_id(k)}
            for k in keys
        ],
        "profile": traits,
        "profile_created_at": _iso(profile.created_at) if profile else None,
        "consent": {
            "current": dict(subscriptions) if isinstance(subscriptions, Mapping) else {},
            "history": [
                {
                    "channel": c.channel,
                    "subscribed": c.subscribed,
                    "previous": c.previous,
                    "source": c.source,
                    "message_id": c.message_id,
                    "at": _iso(c.changed_at),
                }
                for c in consent_history(session, owner, 10_000)
            ],
        },
        "events": [
            {
                "message_id": e.message_id,
                "type": e.type,
                "timestamp": _iso(e.timestamp),
                "received_at": _iso(e.received_at),
                "status": e.status,
                "payload": e.payload,
            }
            for e in events
        ],
        "runs": [
            {
                "run_id": r.run_id,
                "journey": r.journey_id,
                "version": r.version,
                "status": r.status,
                "step": r.step,
                "entered_at": _iso(r.entered_at),
                "ended_at": _iso(r.ended_at),
                "converted_at": _iso(r.converted_at),
            }
            for r in runs
        ],
        "messages": [
            {
                "message_id": m.message_id,
                "journey": m.journey_id,
                "step": m.step,
                "channel": m.channel,
                "status": m.status,
                "reason": m.reason,
                "at": _iso(m.send_at),
                "provider": m.provider,
                "content": m.content,
            }
            for m in messages
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_z(moment)
