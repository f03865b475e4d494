"""Users, runs, timers and messages in the database, as the processor sees them.

:class:`SqlUserBook` loads a user's state (profile, runs still able to change,
entry history, messages counting toward caps) inside the caller's transaction and
writes it back on :meth:`SqlUserBook.flush`. It first locks the user's profile row:
a profile row is its user's mutex, so one user's inputs are never applied by two
workers at once, whichever partition, dispatcher or process they come from.

Locking follows one rule: lock the owner, then look again. An id's owner can change
only by a link that holds the owner's lock, so once the lock is held and the identity
map read afresh says the same owner, it stays so until the transaction ends.

:class:`SqlEffects` turns the runtime's commands into rows: timers, outbox
messages and run states, in the same transaction as the new state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.graph import CompiledJourney
from engine.identity import anonymous_key, display_id, user_key
from engine.policies import Cap, SentMessage
from engine.processor import Catalog, UserState
from engine.runs import (
    ACTIVE,
    DeliveryResult,
    Dispatch,
    EntryHistory,
    MessageRef,
    RunFact,
    RunState,
    ScheduleMessage,
    ScheduleTimer,
    Suppressed,
)
from engine.store.codec import decode_state, encode_state
from engine.store.partitions import partition_of
from engine.store.schema import Entry, Identity, Message, Profile, Run, Timer

log = logging.getLogger("journey.store")

#: Message statuses that hold a frequency-cap slot.
COUNTING = ("scheduled", "pending", "sending", "sent", "delivered", "bounced")
MAX_ALIAS_HOPS = 16
#: Users loaded per query: well under every backend's limit on bound parameters.
PREFETCH_CHUNK = 500
MERGED = "merged"

_seq_lock = threading.Lock()
_seq_state = {"last": 0}


def next_seq() -> int:
    """A process-wide increasing number: timers due at the same instant fire in set order."""
    with _seq_lock:
        value = max(time.time_ns(), _seq_state["last"] + 1)
        _seq_state["last"] = value
        return value


def owner_of(session: Session, key: str) -> str:
    """The key that owns ``key`` now. Links are kept one hop deep (``link`` re-points
    earlier links), but a chain is still followed, and a broken cycle stops it."""
    seen = {key}
    for _ in range(MAX_ALIAS_HOPS):
        link = session.get(Identity, key)
        if link is None or link.owner_key in seen:
            return key
        key = link.owner_key
        seen.add(key)
    return key


def owners_of(session: Session, keys: Iterable[str]) -> dict[str, str]:
    """``owner_of`` for many keys: one query for the usual one-hop links."""
    keys = sorted(set(keys))
    found: dict[str, str] = {}
    for start in range(0, len(keys), PREFETCH_CHUNK):
        chunk = keys[start : start + PREFETCH_CHUNK]
        rows = session.execute(
            select(Identity.alias_key, Identity.owner_key).where(Identity.alias_key.in_(chunk))
        )
        found.update((alias, owner) for alias, owner in rows)
    owners = {key: found.get(key, key) for key in keys}
    for key, owner in owners.items():
        if owner != key:  # a chain a link did not re-point (never made here, but followed)
            owners[key] = owner_of(session, owner)
    return owners


def run_from_row(row: Run) -> RunState:
    return decode_state(
        run_id=row.run_id,
        journey_id=row.journey_id,
        version=row.version,
        user_id=display_id(row.user_key),
        status=row.status,
        step=row.step,
        entered_at=row.entered_at,
        ended_at=row.ended_at,
        converted_at=row.converted_at,
        state=row.state,
    )


class SqlUserBook:
    """The processor's UserBook over one open transaction."""

    def __init__(self, session: Session, now: datetime, cap_horizon: timedelta) -> None:
        self.session = session
        self.now = now
        self.cap_horizon = cap_horizon
        self.users: dict[str, UserState] = {}
        self.owners: dict[str, str] = {}
        self.merged: dict[str, str] = {}
        # The rows behind the loaded users, changed in place and written once by flush.
        self.profile_rows: dict[str, Profile] = {}
        self.loaded_traits: dict[str, dict[str, Any]] = {}
        self.entry_rows: dict[tuple[str, str], Entry] = {}
        self.run_rows: dict[str, Run] = {}
        self.message_rows: dict[str, Message] = {}
        #: Messages added as new without asking the database first (see ``flush``).
        self.unverified: dict[str, Message] = {}
        self.locked: set[str] = set()
        # The latest input time applied to each loaded user (``Profile.input_at``).
        self.input_at: dict[str, datetime | None] = {}
        self.postgres = session.get_bind().dialect.name == "postgresql"

    # -- UserBook --

    def owner(self, key: str) -> str:
        """The key that owns ``key`` now (its owner is locked and loaded)."""
        if key not in self.owners:
            self.prefetch([key])
        return self.owners[key]

    def resolve(self, user_id: str | None, anonymous_id: str | None) -> str:
        if user_id is not None:
            return self.owner(user_key(user_id))
        assert anonymous_id is not None
        return self.owner(anonymous_key(anonymous_id))

    def get(self, key: str) -> UserState:
        if key not in self.users:
            self.prefetch([key])
        return self.users[key]

    def link(self, source: str, target: str, now: datetime) -> str | None:
        self.prefetch([source, target])  # both users locked before the map changes
        owner = self.owner(target)
        if source == owner or self.owner(source) != source:
            return None  # the same user, or already linked: the first link wins
        # Written at once (not at flush), so later lookups in this transaction see it.
        self.session.execute(
            insert(Identity).values(alias_key=source, owner_key=owner, linked_at=now)
        )
        self.session.execute(
            update(Identity).where(Identity.owner_key == source).values(owner_key=owner)
        )
        for key, value in list(self.owners.items()):
            if value == source:
                self.owners[key] = owner
        self.owners[source] = owner
        return owner

    def take(self, key: str) -> UserState | None:
        if key not in self.users and self.session.get(Profile, key) is None:
            return None
        user = self.get(key)
        del self.users[key]
        owner = self.merged[key] = self.owners.get(key, key)
        gone_at = self.input_at.pop(key, None)
        if gone_at is not None:
            self.applied([owner], gone_at)
        return user

    # -- the users' clocks --

    def input_time(self, keys: Iterable[str], at: datetime) -> datetime:
        """When an input at ``at`` for ``keys`` applies: never before an input already
        applied to one of their owners (a late commit or another worker's input)."""
        moments = [at]
        for key in keys:
            owner = self.owner(key)
            self.get(owner)
            applied = self.input_at.get(owner)
            if applied is not None:
                moments.append(applied)
        return max(moments)

    def applied(self, keys: Iterable[str], at: datetime) -> None:
        """Inputs up to ``at`` have been applied to the owners of ``keys``."""
        for key in keys:
            owner = self.owner(key)
            if owner in self.users:
                current = self.input_at.get(owner)
                self.input_at[owner] = at if current is None else max(current, at)

    # -- loading and saving --

    def prefetch(self, keys: Iterable[str]) -> None:
        """Lock and load the owners of ``keys``: a batch's users in a few queries.

        Owners of keys not seen yet are read, locked in key order, then read again; an
        owner that changed meanwhile (a merge committed between the reads) is locked in
        turn, until the map holds still. Only then are the users loaded. Keys seen before
        keep the owner they have: it was settled under a lock, or by a link made here.
        """
        keys = set(keys)
        new = sorted(k for k in keys if k not in self.owners)
        guess = self._links(new)
        settled = {k: guess.get(k, k) for k in new}
        wanted = {*settled.values(), *(self.owners[k] for k in keys if k in self.owners)}
        wanted -= self.locked
        while wanted:
            ordered = sorted(wanted)
            for start in range(0, len(ordered), PREFETCH_CHUNK):
                self._lock(ordered[start : start + PREFETCH_CHUNK])
            self.locked.update(wanted)
            fresh = self._links(sorted({*new, *wanted}))
            settled = {k: fresh.get(k, k) for k in new}
            # A key locked as an owner that a merge had just made an alias: locking made
            # its profile row again, and the merge had moved everything of it away.
            stale = sorted(k for k in wanted if k in fresh and k not in self.users)
            if stale:
                self.session.execute(delete(Profile).where(Profile.user_key.in_(stale)))
            for key in stale:
                settled[key] = fresh[key]
            wanted = set(settled.values()) - self.locked
        self.owners.update(settled)
        load = sorted({self.owners[k] for k in keys} - set(self.users))
        for start in range(0, len(load), PREFETCH_CHUNK):
            with self.session.no_autoflush:
                self._load(load[start : start + PREFETCH_CHUNK])

    def _links(self, keys: Sequence[str]) -> dict[str, str]:
        """The identity map's entries for ``keys`` (alias -> owner), as stored now."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), PREFETCH_CHUNK):
            chunk = keys[start : start + PREFETCH_CHUNK]
            rows = self.session.execute(
                select(Identity.alias_key, Identity.owner_key).where(Identity.alias_key.in_(chunk))
            )
            found.update((alias, owner) for alias, owner in rows)
        return found

    def _lock(self, keys: list[str]) -> None:
        """Make sure the profile rows exist, and lock them: a profile row is its user's mutex.

        Rows are locked in key order, so two workers locking overlapping sets cannot
        deadlock. (SQLite needs no row locks: BEGIN IMMEDIATE serializes writers.)
        """
        values = [
            {"user_key": key, "traits": {}, "created_at": self.now, "updated_at": self.now}
            for key in keys
        ]
        insert = pg_insert(Profile) if self.postgres else sqlite_insert(Profile)
        self.session.execute(insert.values(values).on_conflict_do_nothing())
        if self.postgres:
            self.session.execute(
                select(Profile.user_key)
                .where(Profile.user_key.in_(keys))
                .order_by(Profile.user_key)
                .with_for_update()
            )

    def _load(self, keys: list[str]) -> None:
        session = self.session
        profiles = {
            p.user_key: p
            for p in session.scalars(
                select(Profile).where(Profile.user_key.in_(keys)),
                execution_options={"populate_existing": True},
            )
        }
        users = {key: UserState(key=key, profile=dict(profiles[key].traits or {})) for key in keys}
        for key in keys:
            self.profile_rows[key] = profiles[key]
            self.loaded_traits[key] = dict(profiles[key].traits or {})
            self.input_at[key] = profiles[key].input_at
        runs = session.scalars(
            select(Run)
            .where(Run.user_key.in_(keys), or_(Run.status == ACTIVE, Run.goal_until >= self.now))
            .order_by(Run.entered_at, Run.run_id)
        )
        waited: list[str] = []  # messages runs wait on: deferred, or being delivered
        for row in runs:
            run = users[row.user_key].runs[row.run_id] = run_from_row(row)
            self.run_rows[row.run_id] = row
            if run.waiting is not None and run.waiting.message_id:
                waited.append(run.waiting.message_id)
        if waited:
            for message in session.scalars(select(Message).where(Message.message_id.in_(waited))):
                self.message_rows[message.message_id] = message
        for entry in session.scalars(select(Entry).where(Entry.user_key.in_(keys))):
            users[entry.user_key].entries[entry.journey_id] = EntryHistory(
                entry.count, entry.last_entered_at
            )
            self.entry_rows[(entry.user_key, entry.journey_id)] = entry
        if self.cap_horizon > timedelta(0):
            sent = session.scalars(
                select(Message).where(
                    Message.user_key.in_(keys),
                    Message.status.in_(COUNTING),
                    Message.send_at > self.now - self.cap_horizon,
                )
            )
            for message in sent:
                users[message.user_key].sent[message.message_id] = SentMessage(
                    message.channel, message.send_at
                )
                self.message_rows[message.message_id] = message
        self.users.update(users)

    def flush(self) -> None:
        """Write what changed for every loaded user, and move what merged users left behind."""
        session = self.session
        self._settle_new_messages()
        for key, user in self.users.items():
            row = self.profile_rows[key]
            if user.profile != self.loaded_traits[key]:
                row.traits, row.updated_at = dict(user.profile), self.now
            if self.input_at.get(key) != row.input_at:
                row.input_at = self.input_at.get(key)
            for journey_id, history in user.entries.items():
                assert history.last_entered_at is not None
                entry = self.entry_rows.get((key, journey_id))
                if entry is None:
                    entry = Entry(user_key=key, journey_id=journey_id)
                    session.add(entry)
                    self.entry_rows[(key, journey_id)] = entry
                entry.count, entry.last_entered_at = history.count, history.last_entered_at
        session.flush()
        for gone, owner in self.merged.items():
            session.execute(
                update(Timer)
                .where(Timer.user_key == gone)
                .values(user_key=owner, partition=partition_of(owner))
            )
            for table in (Message, Run):
                session.execute(update(table).where(table.user_key == gone).values(user_key=owner))
            session.execute(delete(Entry).where(Entry.user_key == gone))
            session.execute(delete(Profile).where(Profile.user_key == gone))

    def _settle_new_messages(self) -> None:
        """Messages added as new are looked for in one query per chunk, not one each: a
        message id the database has already (a send replayed) updates that row instead."""
        new = self.unverified
        self.unverified = {}
        ids = sorted(new)
        with self.session.no_autoflush:
            for start in range(0, len(ids), PREFETCH_CHUNK):
                chunk = ids[start : start + PREFETCH_CHUNK]
                found = self.session.scalars(
                    select(Message.message_id).where(Message.message_id.in_(chunk))
                ).all()
                for message_id in found:
                    added = new[message_id]
                    self.session.expunge(added)
                    stored = self.session.get(Message, message_id)
                    assert stored is not None
                    for name in ("status", "reason", "send_at", "updated_at"):
                        setattr(stored, name, getattr(added, name))
                    self.message_rows[message_id] = stored


class SqlEffects:
    """The processor's Effects as rows in the same transaction.

    Rows the book loaded are changed in place; new rows are added; the book's flush
    writes them all at once.
    """

    def __init__(
        self, session: Session, catalog: Catalog, now: datetime, book: SqlUserBook
    ) -> None:
        self.session = session
        self.catalog = catalog
        self.now = now
        self.book = book
        self.new_timers: dict[str, Timer] = {}
        self.cancelled: set[str] = set()  # timer ids cancelled in this transaction
        self.due_channels: set[str] = set()  # channels of messages queued to send now
        #: (channel, status, reason) of each message outcome decided here (suppressions).
        self.outcomes: list[tuple[str, str, str | None]] = []
        #: Called with (user key, timer) for every timer set: a batch that must not run
        #: past a timer it has just set learns of it here.
        self.timer_watchers: list[Callable[[str, Timer], None]] = []

    def fact(self, user: UserState, kind: str, fact: RunFact) -> None:
        log.info("run %s of %s %s", fact.run_id, fact.journey_id, kind)

    def timer_set(self, user: UserState, command: ScheduleTimer) -> None:
        # Timer ids are unique per (run, step, visit): a timer set now is a new row.
        timer = Timer(
            timer_id=command.timer_id,
            seq=next_seq(),
            run_id=command.run_id,
            user_key=user.key,
            partition=partition_of(user.key),
            due_at=command.due_at,
        )
        self.session.add(timer)
        self.new_timers[command.timer_id] = timer
        for watch in self.timer_watchers:
            watch(user.key, timer)

    def timer_cancelled(self, user: UserState, timer_id: str) -> None:
        self.cancelled.add(timer_id)
        timer = self.new_timers.pop(timer_id, None)
        if timer is not None and timer in self.session.new:
            self.session.expunge(timer)  # set and cancelled in this same transaction
        elif timer is not None:
            self.session.delete(timer)
        else:
            self.session.execute(delete(Timer).where(Timer.timer_id == timer_id))

    def suppressed(self, user: UserState, command: Suppressed) -> None:
        self._message(user, command.message, "suppressed", command.at, reason=command.reason)
        self.outcomes.append((command.message.channel, "suppressed", command.reason))

    def message_scheduled(self, user: UserState, command: ScheduleMessage) -> None:
        self._message(user, command.message, "scheduled", command.at)

    def message_cancelled(self, user: UserState, message_id: str) -> None:
        row = self._message_row(message_id)
        if row is not None and row.status == "scheduled":
            row.status, row.updated_at = "cancelled", self.now

    def dispatch(
        self, user: UserState, journey: CompiledJourney, run: RunState, command: Dispatch
    ) -> DeliveryResult | None:
        self._message(user, command.message, "pending", command.at)
        self.due_channels.add(command.message.channel)
        return None  # the dispatcher delivers it and feeds the result back

    def run_saved(self, user: UserState, run: RunState) -> None:
        self._save_run(user, run, run.status)

    def run_dropped(self, user: UserState, run: RunState) -> None:
        if run.active:  # merged away: the known user's own run won
            if run.waiting and run.waiting.timer_id:
                self.timer_cancelled(user, run.waiting.timer_id)
            if run.waiting and run.waiting.kind == "deferred" and run.waiting.message_id:
                self.message_cancelled(user, run.waiting.message_id)
            self._save_run(user, run, MERGED)
        else:
            self._save_run(user, run, run.status)

    # -- rows --

    def _save_run(self, user: UserState, run: RunState, status: str) -> None:
        journey = self.catalog.journey(run.journey_id, run.version)
        goal_until = None  # a run merged away is over for good: it cannot convert either
        if journey.goal is not None and run.converted_at is None and status != MERGED:
            goal_until = run.entered_at + journey.goal.within
        row = self.book.run_rows.get(run.run_id)
        if row is None:  # every run the processor can touch was loaded: this one is new
            row = Run(run_id=run.run_id)
            self.session.add(row)
            self.book.run_rows[run.run_id] = row
        row.user_key = user.key
        row.journey_id = run.journey_id
        row.version = run.version
        row.status = status
        row.step = run.step if status == ACTIVE else None
        row.entered_at = run.entered_at
        row.ended_at = run.ended_at or (self.now if status == MERGED else None)
        row.converted_at = run.converted_at
        row.goal_until = goal_until
        row.state = encode_state(run)
        row.updated_at = self.now

    def _message_row(self, message_id: str) -> Message | None:
        row = self.book.message_rows.get(message_id)
        if row is None:
            row = self.session.get(Message, message_id)
            if row is not None:
                self.book.message_rows[message_id] = row
        return row

    def _message(
        self, user: UserState, ref: MessageRef, status: str, at: datetime, reason: str | None = None
    ) -> None:
        # Messages runs wait on were loaded with them; any other is new (``flush`` makes
        # sure, for all of them at once).
        row = self.book.message_rows.get(ref.message_id)
        if row is None:
            run = user.runs.get(ref.run_id)
            row = Message(
                message_id=ref.message_id,
                run_id=ref.run_id,
                user_key=user.key,
                journey_id=ref.journey_id,
                # Counted by version (``stat_counters``): its run may be written after it.
                version=run.version if run is not None else None,
                step=ref.step,
                channel=ref.channel,
                attempt=ref.attempt,
                tries=0,
                created_at=self.now,
            )
            self.session.add(row)
            self.book.message_rows[ref.message_id] = row
            self.book.unverified[ref.message_id] = row
        row.status = status
        row.reason = reason
        row.send_at = at
        row.updated_at = self.now


def cap_horizon(caps: Sequence[Cap]) -> timedelta:
    """How far back sent messages matter: the longest cap window (zero without caps)."""
    return max((cap.per for cap in caps), default=timedelta(0))
