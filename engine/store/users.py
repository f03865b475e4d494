"""Users, runs, timers and messages in the database, as the processor sees them.

:class:`SqlUserBook` loads a user's state (profile, runs still able to change,
entry history, messages counting toward caps) inside the caller's transaction,
locking the user's profile row so one user's inputs are never applied
concurrently, and writes it back on :meth:`SqlUserBook.flush`.
:class:`SqlEffects` turns the runtime's commands into rows: timers, outbox
messages and run states, in the same transaction as the new state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
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
from engine.store.schema import Entry, Identity, Message, Profile, Run, Timer

log = logging.getLogger("journey.store")

#: Message statuses that hold a frequency-cap slot.
COUNTING = ("scheduled", "pending", "sending", "sent")
MERGED = "merged"

_seq_lock = threading.Lock()
_seq_state = {"last": 0}


def next_seq() -> int:
    """A process-wide increasing number: timers due at the same instant fire in set order."""
    with _seq_lock:
        value = max(time.time_ns(), _seq_state["last"] + 1)
        _seq_state["last"] = value
        return value


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
        self.postgres = session.get_bind().dialect.name == "postgresql"

    # -- UserBook --

    def owner(self, key: str) -> str:
        """The key that owns ``key`` now."""
        if key not in self.owners:
            row = self.session.get(Identity, key)
            self.owners[key] = row.owner_key if row else key
        return self.owners[key]

    def resolve(self, user_id: str | None, anonymous_id: str | None) -> str:
        if user_id is not None:
            return self.owner(user_key(user_id))
        assert anonymous_id is not None
        return self.owner(anonymous_key(anonymous_id))

    def get(self, key: str) -> UserState:
        user = self.users.get(key)
        if user is None:
            user = self.users[key] = self._load(key)
        return user

    def link(self, source: str, target: str, now: datetime) -> str | None:
        owner = self.owner(target)
        if source == owner or self.session.get(Identity, source) is not None:
            return None
        self.session.add(Identity(alias_key=source, owner_key=owner, linked_at=now))
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
        self.merged[key] = self.owners.get(key, key)
        return user

    # -- loading and saving --

    def _lock(self, key: str) -> None:
        """Make sure the profile row exists, and lock it: it is the user's mutex."""
        values = {"user_key": key, "traits": {}, "created_at": self.now, "updated_at": self.now}
        if self.postgres:
            self.session.execute(pg_insert(Profile).values(**values).on_conflict_do_nothing())
            self.session.execute(
                select(Profile.user_key).where(Profile.user_key == key).with_for_update()
            )
        else:  # SQLite: BEGIN IMMEDIATE already serializes writers
            self.session.execute(sqlite_insert(Profile).values(**values).on_conflict_do_nothing())

    def _load(self, key: str) -> UserState:
        self._lock(key)
        session = self.session
        profile = session.get(Profile, key, populate_existing=True)
        assert profile is not None
        runs = session.scalars(
            select(Run)
            .where(Run.user_key == key, or_(Run.status == ACTIVE, Run.goal_until >= self.now))
            .order_by(Run.entered_at, Run.run_id)
        )
        entries = session.scalars(select(Entry).where(Entry.user_key == key))
        sent = session.execute(
            select(Message.message_id, Message.channel, Message.send_at).where(
                Message.user_key == key,
                Message.status.in_(COUNTING),
                Message.send_at > self.now - self.cap_horizon,
            )
        )
        return UserState(
            key=key,
            profile=dict(profile.traits or {}),
            runs={row.run_id: run_from_row(row) for row in runs},
            entries={e.journey_id: EntryHistory(e.count, e.last_entered_at) for e in entries},
            sent={m: SentMessage(channel, at) for m, channel, at in sent},
        )

    def flush(self) -> None:
        """Write every loaded user back, and move what merged users left behind."""
        session = self.session
        for key, user in self.users.items():
            session.execute(
                update(Profile)
                .where(Profile.user_key == key)
                .values(traits=user.profile, updated_at=self.now)
            )
            for journey_id, history in user.entries.items():
                assert history.last_entered_at is not None
                session.merge(
                    Entry(
                        user_key=key,
                        journey_id=journey_id,
                        count=history.count,
                        last_entered_at=history.last_entered_at,
                    )
                )
        for gone, owner in self.merged.items():
            for table in (Timer, Message, Run):
                session.execute(update(table).where(table.user_key == gone).values(user_key=owner))
            session.execute(delete(Entry).where(Entry.user_key == gone))
            session.execute(delete(Profile).where(Profile.user_key == gone))
        session.flush()


class SqlEffects:
    """The processor's Effects as rows in the same transaction."""

    def __init__(self, session: Session, catalog: Catalog, now: datetime) -> None:
        self.session = session
        self.catalog = catalog
        self.now = now
        self.dispatched = 0
        self.timers_set = 0

    def fact(self, user: UserState, kind: str, fact: RunFact) -> None:
        log.info("run %s of %s %s", fact.run_id, fact.journey_id, kind)

    def timer_set(self, user: UserState, command: ScheduleTimer) -> None:
        self.timers_set += 1
        self.session.merge(
            Timer(
                timer_id=command.timer_id,
                seq=next_seq(),
                run_id=command.run_id,
                user_key=user.key,
                due_at=command.due_at,
            )
        )

    def timer_cancelled(self, user: UserState, timer_id: str) -> None:
        self.session.execute(delete(Timer).where(Timer.timer_id == timer_id))

    def suppressed(self, user: UserState, command: Suppressed) -> None:
        self._message(user, command.message, "suppressed", command.at, reason=command.reason)

    def message_scheduled(self, user: UserState, command: ScheduleMessage) -> None:
        self._message(user, command.message, "scheduled", command.at)

    def message_cancelled(self, user: UserState, message_id: str) -> None:
        self.session.execute(
            update(Message)
            .where(Message.message_id == message_id, Message.status == "scheduled")
            .values(status="cancelled", updated_at=self.now)
        )

    def dispatch(
        self, user: UserState, journey: CompiledJourney, run: RunState, command: Dispatch
    ) -> DeliveryResult | None:
        self.dispatched += 1
        self._message(user, command.message, "pending", command.at)
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
        goal_until = None
        if journey.goal is not None and run.converted_at is None:
            goal_until = run.entered_at + journey.goal.within
        self.session.merge(
            Run(
                run_id=run.run_id,
                user_key=user.key,
                journey_id=run.journey_id,
                version=run.version,
                status=status,
                step=run.step if status == ACTIVE else None,
                entered_at=run.entered_at,
                ended_at=run.ended_at or (self.now if status == MERGED else None),
                converted_at=run.converted_at,
                goal_until=goal_until,
                state=encode_state(run),
                updated_at=self.now,
            )
        )

    def _message(
        self, user: UserState, ref: MessageRef, status: str, at: datetime, reason: str | None = None
    ) -> None:
        row = self.session.get(Message, ref.message_id)
        if row is None:
            row = Message(
                message_id=ref.message_id,
                run_id=ref.run_id,
                user_key=user.key,
                journey_id=ref.journey_id,
                step=ref.step,
                channel=ref.channel,
                attempt=ref.attempt,
                tries=0,
                created_at=self.now,
            )
            self.session.add(row)
        row.status = status
        row.reason = reason
        row.send_at = at
        row.updated_at = self.now


def cap_horizon(caps: Sequence[Cap]) -> timedelta:
    """How far back sent messages matter: the longest cap window (zero without caps)."""
    return max((cap.per for cap in caps), default=timedelta(0))
