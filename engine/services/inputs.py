"""Applying inputs: the pending events and due timers of claimed partitions, in user order.

One round claims a few partitions (``engine.store.partitions``), loads what is pending
there, locks the users it touches (``engine.store.users``) and applies each user's inputs
in time order: events at their receive time, timers at their due time, a timer before an
event of the same instant (journey-format section 9), and never before an input already
applied to that user (a request that committed late, or an input another worker applied,
takes its place after them). Everything is written in the claim's one transaction.

Only order within a user matters, so a user's backlog holds up nobody else: a round takes
at most ``per_user`` inputs of one user, and a user whose inputs go past that, or past a
timer the round itself set and that is already due, stops there and goes on next round.

A round that fails for a reason of its own (not the database's) is retried one input at a
time per partition; the input that still fails is set aside as a dead letter.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from engine.events import Event, parse_message
from engine.identity import anonymous_key, user_key
from engine.metrics import count_inputs
from engine.services.poison import Attempts, WorkerDied
from engine.services.session import open_processor
from engine.services.work import Clock, Work, dead_letter, is_passing
from engine.store.consent import consent_recorded
from engine.store.database import Database
from engine.store.deployments import DeployedCatalog
from engine.store.partitions import claim_partitions
from engine.store.privacy import brings_consent, count_dropped, forgotten_among, revive
from engine.store.schema import StoredEvent, Timer

log = logging.getLogger("journey.engine")

TIMER, EVENT = 0, 1  # a timer due at an event's instant fires first
Order = tuple[datetime, int, int]  # (time, TIMER|EVENT, seq): the order inputs apply in


def event_keys(event: Event) -> list[str]:
    """Every user key an event may touch (an alias's previousId may be either kind)."""
    keys = []
    if event.user_id is not None:
        keys.append(user_key(event.user_id))
    if event.anonymous_id is not None:
        keys.append(anonymous_key(event.anonymous_id))
    if event.previous_id is not None:
        keys += [user_key(event.previous_id), anonymous_key(event.previous_id)]
    return keys


@dataclass(frozen=True, slots=True)
class PendingEvent:
    seq: int
    key: str  # the key it is routed by
    partition: int
    at: datetime  # received
    payload: dict[str, Any]

    @property
    def order(self) -> Order:
        return (self.at, EVENT, self.seq)

    @property
    def ref(self) -> str:
        return str(self.seq)


@dataclass(frozen=True, slots=True)
class DueTimer:
    timer_id: str
    run_id: str
    key: str  # its user's
    partition: int
    at: datetime  # due
    seq: int

    @property
    def order(self) -> Order:
        return (self.at, TIMER, self.seq)

    @property
    def ref(self) -> str:
        return self.timer_id


Input = PendingEvent | DueTimer


@dataclass
class Batch:
    """What one claim loaded: inputs in order, and where each key must stop this round."""

    partitions: list[int] = field(default_factory=list)
    inputs: list[Input] = field(default_factory=list)
    stop_at: dict[str, Order] = field(default_factory=dict)
    more: bool = False  # inputs were left for the next round

    def without(self, partitions: Sequence[int]) -> Batch:
        """This batch less the inputs of ``partitions`` (they stay claimed, untouched)."""
        left = set(partitions)
        return Batch(
            [p for p in self.partitions if p not in left],
            [i for i in self.inputs if i.partition not in left],
            self.stop_at,
            True,
        )


@dataclass
class InputService:
    """Claims partitions and applies their pending events and due timers."""

    db: Database
    catalog: DeployedCatalog
    clock: Clock
    partitions_per_claim: int = 32
    per_user: int = 100  # inputs of one user per round
    max_inputs: int = 2000  # inputs per round (at least one partition's, whatever its size)

    attempts: Attempts = field(init=False)

    def __post_init__(self) -> None:
        self.attempts = Attempts(self.db)

    def handle(self, partitions: Sequence[int] | None = None) -> Work:
        """One round: claim (any partitions with work, or those named), apply, release."""
        work = self._round(partitions)
        count_inputs(work.events, work.timers, work.dead)
        return work

    def _round(self, partitions: Sequence[int] | None) -> Work:
        now = self.clock()
        batch = Batch()
        risky: list[int] = []
        try:
            with self.db.transaction() as session:
                batch = self.claim(session, now, partitions)
                if not batch.inputs:
                    return Work(more=batch.more)
                before = self.attempts.begin(batch.partitions)
                risky = [p for p, count in before.items() if count.risky]
                if risky:  # rounds over them keep killing workers: one input at a time
                    log.warning("partitions %s killed their workers; going carefully", risky)
                    batch = batch.without(risky)
                work = self.apply(session, batch, now) if batch.inputs else Work()
                self.attempts.cleared(session, batch.partitions)
            work.more = batch.more
            for partition in risky:
                work += self._one_by_one(partition, self.max_inputs, careful=True)
            return work
        except Exception as exc:
            self.attempts.forget(batch.partitions)
            if is_passing(exc) or not batch.inputs:
                raise
            log.warning(
                "a round over %d partitions failed (%s); retrying one input at a time",
                len(batch.partitions),
                type(exc).__name__,
            )
        work = Work(more=True)
        for partition in sorted({i.partition for i in batch.inputs}):
            work += self._one_by_one(partition, len(batch.inputs))
        return work

    def next_due(self) -> datetime | None:
        """When the earliest timer comes due (None: no timers)."""
        with self.db.sessions() as session:
            return session.scalar(select(func.min(Timer.due_at)))

    # -- claiming and loading --

    def claim(
        self,
        session: Session,
        now: datetime,
        wanted: Sequence[int] | None = None,
        first: bool = False,
    ) -> Batch:
        """Lock partitions with work in ``session``'s transaction and load their inputs
        (``first``: one partition, its first input only). ``handle`` is ``claim`` then
        ``apply`` in one transaction; the claim lasts until that transaction ends."""
        self.catalog.refresh(session)  # a failure here is not the inputs' fault: it raises
        limit = 1 if first else self.partitions_per_claim
        partitions = claim_partitions(session, now, limit, wanted)
        if not partitions:
            return Batch()
        batch = self._load(session, partitions, now)
        if first and batch.inputs:
            batch.more = batch.more or len(batch.inputs) > 1
            batch.inputs = batch.inputs[:1]
        return batch

    def _load(self, session: Session, partitions: list[int], now: datetime) -> Batch:
        """The claimed partitions' inputs, at most ``per_user`` per key, then
        ``max_inputs`` in all (whole partitions, in claim order)."""
        cap = self.per_user
        found: dict[int, list[Input]] = defaultdict(list)
        stop_at: dict[str, Order] = {}
        rank = func.row_number().over(
            partition_by=StoredEvent.user_key, order_by=(StoredEvent.received_at, StoredEvent.seq)
        )
        events = (
            select(
                StoredEvent.seq,
                StoredEvent.user_key,
                StoredEvent.partition,
                StoredEvent.received_at,
                StoredEvent.payload,
                rank.label("rank"),
            )
            .where(StoredEvent.status == "pending", StoredEvent.partition.in_(partitions))
            .subquery()
        )
        for seq, key, partition, at, payload, number in session.execute(
            select(events).where(events.c.rank <= cap + 1)
        ):
            item: Input = PendingEvent(seq, key, partition, at, payload)
            self._place(item, number, found, stop_at)
        rank = func.row_number().over(
            partition_by=Timer.user_key, order_by=(Timer.due_at, Timer.seq)
        )
        timers = (
            select(
                Timer.timer_id,
                Timer.run_id,
                Timer.user_key,
                Timer.partition,
                Timer.due_at,
                Timer.seq,
                rank.label("rank"),
            )
            .where(Timer.partition.in_(partitions), Timer.due_at <= now)
            .subquery()
        )
        for timer_id, run_id, key, partition, due, seq, number in session.execute(
            select(timers).where(timers.c.rank <= cap + 1)
        ):
            item = DueTimer(timer_id, run_id, key, partition, due, seq)
            self._place(item, number, found, stop_at)
        batch = Batch(stop_at=stop_at, more=bool(stop_at))
        for partition in partitions:
            items = found.get(partition, [])
            if batch.inputs and len(batch.inputs) + len(items) > self.max_inputs:
                batch.more = True
                continue  # stays claimed, untouched, until this round commits
            batch.partitions.append(partition)
            batch.inputs += items
        batch.inputs.sort(key=lambda i: i.order)
        return batch

    def _place(
        self,
        item: Input,
        number: int,
        found: dict[int, list[Input]],
        stop_at: dict[str, Order],
    ) -> None:
        if number <= self.per_user:
            found[item.partition].append(item)
        else:  # the first input past the cap: this key stops before it
            stop_at[item.key] = min(stop_at.get(item.key, item.order), item.order)

    # -- applying --

    def apply(self, session: Session, batch: Batch, now: datetime) -> Work:
        """Apply ``batch`` in this transaction: how many events and timers it applied, and
        the channels that now have messages to send."""
        processor, book, effects = open_processor(session, self.catalog, now)
        interesting = self.catalog.current.by_event
        parsed: dict[int, Event] = {}
        keys: set[str] = set()
        timer_ids: list[str] = []
        for item in batch.inputs:
            if isinstance(item, PendingEvent):
                event = parsed[item.seq] = parse_message(item.payload)
                if event.type in ("identify", "alias") or event.name in interesting:
                    keys.update(event_keys(event))
            else:
                keys.add(item.key)
                timer_ids.append(item.timer_id)
        book.prefetch(keys)
        # Under the users' locks: the timers still there and still in these partitions
        # (a merge may have moved one to another partition, whose claimer fires it).
        live = self._still_here(session, timer_ids, batch.partitions)
        stop_at = dict(batch.stop_at)

        def stop_before_new_timer(key: str, timer: Timer) -> None:
            if timer.due_at <= now:  # due already: this user's later inputs wait for it
                order = (timer.due_at, TIMER, timer.seq)
                stop_at[key] = min(stop_at.get(key, order), order)

        effects.timer_watchers.append(stop_before_new_timer)

        def waits(item: Input, item_keys: Iterable[str]) -> bool:
            for key in item_keys:
                for who in (key, book.owner(key)):
                    if who in stop_at and stop_at[who] <= item.order:
                        return True
            return False

        # Events under the ids of erased users are dropped, unless they bring new consent.
        gone = forgotten_among(session, (k for e in parsed.values() for k in event_keys(e)))
        processed: list[int] = []
        dropped: list[int] = []
        fired: list[str] = []
        for item in batch.inputs:
            if isinstance(item, PendingEvent):
                event = parsed[item.seq]
                item_keys = event_keys(event)
                erased = gone.intersection(item_keys)
                if erased and event.type == "identify" and brings_consent(event.traits):
                    revive(session, erased)
                    gone -= erased
                elif erased:
                    count_dropped(session, erased)
                    dropped.append(item.seq)
                    continue
                if event.type not in ("identify", "alias") and event.name not in interesting:
                    processed.append(item.seq)  # nothing listens: it moves nothing
                    continue
                if waits(item, item_keys):
                    continue
                at = book.input_time(item_keys, item.at)
                if event.type == "identify" and "subscriptions" in event.traits:
                    with consent_recorded(session, book, item_keys, event.message_id, at):
                        processor.apply(event, at)
                else:
                    processor.apply(event, at)
                book.applied(item_keys, at)
                processed.append(item.seq)
            else:
                if item.timer_id not in live or item.timer_id in effects.cancelled:
                    continue
                if waits(item, [item.key]):
                    continue
                at = book.input_time([item.key], item.at)
                owner = book.owner(item.key)
                processor.fire(book.get(owner), item.run_id, item.timer_id, at)
                book.applied([item.key], at)
                fired.append(item.timer_id)
        self._done(session, processed, fired, dropped)
        book.flush()
        return Work(
            events=len(processed) + len(dropped),
            timers=len(fired),
            channels=frozenset(effects.due_channels),
        )

    def _still_here(
        self, session: Session, timer_ids: list[str], partitions: list[int]
    ) -> set[str]:
        here: set[str] = set()
        for start in range(0, len(timer_ids), 500):
            chunk = timer_ids[start : start + 500]
            here.update(
                session.scalars(
                    select(Timer.timer_id).where(
                        Timer.timer_id.in_(chunk), Timer.partition.in_(partitions)
                    )
                )
            )
        return here

    def _done(
        self, session: Session, processed: list[int], fired: list[str], dropped: list[int]
    ) -> None:
        now = self.clock()
        if dropped:  # kept as rows (counts), their data erased
            session.execute(
                update(StoredEvent)
                .where(StoredEvent.seq.in_(dropped))
                .values(
                    status="dropped", payload={}, user_id=None, anonymous_id=None, processed_at=now
                )
            )
        for start in range(0, len(processed), 500):
            chunk = processed[start : start + 500]
            session.execute(
                update(StoredEvent)
                .where(StoredEvent.seq.in_(chunk), StoredEvent.status == "pending")
                .values(status="processed", processed_at=now)
            )
        for start in range(0, len(fired), 500):
            session.execute(delete(Timer).where(Timer.timer_id.in_(fired[start : start + 500])))

    # -- isolating a failure --

    def _one_by_one(self, partition: int, budget: int, careful: bool = False) -> Work:
        """Apply ``partition``'s inputs one per transaction, setting aside any that fails
        (``careful``: or that killed a worker when it was tried alone before)."""
        work = Work()
        for _ in range(budget):
            now = self.clock()
            failed: Exception | None = None
            first: Input | None = None
            try:
                with self.db.transaction() as session:
                    batch = self.claim(session, now, [partition], first=True)
                    if not batch.inputs:
                        self.attempts.cleared(session, [partition])
                        return work
                    first = batch.inputs[0]
                    if careful:
                        before = self.attempts.begin([partition], first.ref)[partition]
                        if before.killed(first.ref):
                            died = WorkerDied(
                                f"its worker died applying it ({before.attempts} tries)"
                            )
                            self._set_aside(session, first, died)
                            self.attempts.still_careful(session, partition)
                            work.dead += 1
                            continue
                    done = self.apply(session, batch, now)
                    if careful:
                        self.attempts.still_careful(session, partition)
                work += done
                if not done.events + done.timers:
                    return work  # it waits for a later round
                continue
            except Exception as exc:
                if is_passing(exc) or first is None:
                    raise
                failed = exc
            with self.db.transaction() as session:
                batch = self.claim(session, self.clock(), [partition], first=True)
                if batch.inputs and batch.inputs[0] == first:
                    self._set_aside(session, first, failed)
                    work.dead += 1
        work.more = True
        return work

    def _set_aside(self, session: Session, item: Input, exc: Exception) -> None:
        now = self.clock()
        if isinstance(item, PendingEvent):
            session.execute(
                update(StoredEvent)
                .where(StoredEvent.seq == item.seq)
                .values(status="failed", processed_at=now)
            )
            dead_letter(session, "event", item.ref, exc, now)
        else:
            session.execute(delete(Timer).where(Timer.timer_id == item.timer_id))
            payload = {"run_id": item.run_id, "user_key": item.key, "due_at": item.at.isoformat()}
            dead_letter(session, "timer", item.ref, exc, now, payload)
