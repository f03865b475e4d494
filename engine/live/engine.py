"""One engine process's work: apply stored events, fire due timers, deliver the outbox.

Each step is one transaction over a batch and runs the shared
:class:`~engine.processor.Processor`, so live behaviour is the simulator's. The
order the journey format fixes holds here too: a timer due at or before a
pending event fires before it, and events apply in the order they were stored.
Live timing uses the time an event was received.

A batch that fails is retried one item per transaction, and the item that still
fails goes to ``dead_letters`` with its error: it never blocks the others.
"""

from __future__ import annotations

import logging
import secrets
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from engine.channels.senders import OutboundMessage, Receipt, SenderRegistry
from engine.errors import PermanentDeliveryError, RenderError, TransientDeliveryError
from engine.events import Event, parse_message
from engine.identity import anonymous_key, user_key
from engine.messages import DEFAULT_PUBLIC_URL, address_of, render_message
from engine.processor import Processor
from engine.runs import (
    DeliveryResult,
    MessageRef,
)
from engine.store.database import Database
from engine.store.deployments import DeployedCatalog
from engine.store.schema import DeadLetter, Message, Profile, Run, StoredEvent, Timer
from engine.store.users import SqlEffects, SqlUserBook, cap_horizon, owner_of, run_from_row

log = logging.getLogger("journey.engine")
Clock = Callable[[], datetime]
T = TypeVar("T")

#: Delivery tries before a transient failure counts as permanent.
MAX_TRIES = 5
#: How long a claimed message may stay "sending" before another dispatcher retries it.
CLAIM_LEASE = timedelta(minutes=5)


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


def utc_now() -> datetime:
    return datetime.now(UTC)


def backoff(tries: int, retry_after: float | None) -> timedelta:
    """Exponential backoff with a ceiling, or what the provider asked for."""
    if retry_after is not None:
        return timedelta(seconds=max(retry_after, 1.0))
    return timedelta(seconds=min(2 ** (tries - 1) * 5, 600))


@dataclass
class Work:
    """What one round did."""

    events: int = 0
    timers: int = 0
    messages: int = 0
    dead: int = 0

    @property
    def any(self) -> bool:
        return bool(self.events or self.timers or self.messages or self.dead)


@dataclass
class LiveEngine:
    """Carries out the engine's decisions against the database."""

    db: Database
    senders: SenderRegistry = field(default_factory=SenderRegistry)
    clock: Clock = utc_now
    public_url: str = DEFAULT_PUBLIC_URL
    batch_size: int = 200
    #: Signs unsubscribe links (JOURNEY_SECRET_KEY); made up when not given, so links are
    #: never signed with a guessable key (they are then valid for no server).
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    catalog: DeployedCatalog = field(default_factory=DeployedCatalog)

    # -- plumbing --

    def _processor(
        self, session: Session, now: datetime
    ) -> tuple[Processor, SqlUserBook, SqlEffects]:
        self.catalog.refresh(session)
        horizon = cap_horizon(self.catalog.current.policies.caps)
        # The book and effects keep the rows they touch and write them at flush; flushing
        # before every lookup would only repeat that work.
        session.autoflush = False
        book = SqlUserBook(session, now, horizon)
        effects = SqlEffects(session, self.catalog, now, book)
        return Processor(self.catalog, book, effects), book, effects

    def _isolated(
        self,
        kind: str,
        items: list[T],
        ref: Callable[[T], str],
        handle: Callable[[Session, list[T]], None],
        on_dead: Callable[[Session, T], None],
    ) -> int:
        """Run ``handle`` over the batch; if it fails, one item per transaction, dead-lettering
        the items that still fail. Returns the number of dead letters."""
        try:
            with self.db.transaction() as session:
                handle(session, items)
            return 0
        # Anything may fail in a batch (a bug, a bad row, a lost lock); the batch is
        # retried item by item so only the culprit is set aside.
        except Exception:
            log.warning("%s batch of %d failed; retrying one by one", kind, len(items))
        dead = 0
        for item in items:
            try:
                with self.db.transaction() as session:
                    handle(session, [item])
            except Exception as exc:
                dead += 1
                log.error("%s %s failed and was dead-lettered: %s", kind, ref(item), exc)
                with self.db.transaction() as session:
                    session.add(
                        DeadLetter(
                            kind=kind,
                            ref=ref(item),
                            error="".join(traceback.format_exception_only(exc)).strip(),
                            payload={"traceback": traceback.format_exc(limit=8)},
                            created_at=self.clock(),
                        )
                    )
                    on_dead(session, item)
        return dead

    # -- one round --

    def run_once(self) -> Work:
        """Fire due timers, apply pending events, deliver due messages: one round."""
        work = Work()
        work.timers, dead_timers = self.fire_timers()
        work.events, dead_events = self.consume()
        work.messages, dead_messages = self.dispatch()
        work.dead = dead_timers + dead_events + dead_messages
        return work

    def next_timer(self) -> datetime | None:
        """When the earliest timer comes due (None: no timers)."""
        with self.db.sessions() as session:
            return session.scalar(select(func.min(Timer.due_at)))

    def next_message(self) -> datetime | None:
        """When the earliest waiting outbox message comes due (None: none waiting)."""
        with self.db.sessions() as session:
            return session.scalar(
                select(func.min(Message.send_at)).where(Message.status == "pending")
            )

    # -- events --

    def consume(self) -> tuple[int, int]:
        """Apply pending events in stored order, stopping before one a timer must precede."""
        with self.db.transaction() as session:
            first_timer = session.scalar(select(func.min(Timer.due_at)))
            query = (
                select(StoredEvent.seq, StoredEvent.received_at)
                .where(StoredEvent.status == "pending")
                .order_by(StoredEvent.seq)
                .limit(self.batch_size)
            )
            rows = list(session.execute(query))
        now = self.clock()
        seqs: list[int] = []
        for seq, received_at in rows:
            if first_timer is not None and first_timer <= min(received_at, now):
                break  # fire that timer first
            seqs.append(seq)
        if not seqs:
            return 0, 0

        def handle(session: Session, batch: list[int]) -> None:
            events = session.scalars(
                select(StoredEvent)
                .where(StoredEvent.seq.in_(batch), StoredEvent.status == "pending")
                .order_by(StoredEvent.seq)
            ).all()
            if not events:
                return
            processor, book, _ = self._processor(session, self.clock())
            parsed = [(row, parse_message(row.payload)) for row in events]
            interesting = self.catalog.current.by_event
            book.prefetch(
                key
                for _, event in parsed
                if event.type in ("identify", "alias") or event.name in interesting
                for key in event_keys(event)
            )
            for row, event in parsed:
                processor.apply(event, row.received_at)
                row.status = "processed"
                row.processed_at = self.clock()
            book.flush()

        def mark_failed(session: Session, seq: int) -> None:
            session.execute(
                update(StoredEvent).where(StoredEvent.seq == seq).values(status="failed")
            )

        dead = self._isolated("event", seqs, str, handle, mark_failed)
        return len(seqs), dead

    # -- timers --

    def fire_timers(self) -> tuple[int, int]:
        """Fire timers due now, and before the first pending event."""
        now = self.clock()
        with self.db.transaction() as session:
            first_event = session.scalar(
                select(func.min(StoredEvent.received_at)).where(StoredEvent.status == "pending")
            )
            limit = min(now, first_event) if first_event is not None else now
            ids = list(
                session.scalars(
                    select(Timer.timer_id)
                    .where(Timer.due_at <= limit)
                    .order_by(Timer.due_at, Timer.seq)
                    .limit(self.batch_size)
                )
            )
        if not ids:
            return 0, 0

        def handle(session: Session, batch: list[str]) -> None:
            timers = session.scalars(
                select(Timer).where(Timer.timer_id.in_(batch)).order_by(Timer.due_at, Timer.seq)
            ).all()
            if not timers:
                return
            processor, book, _ = self._processor(session, self.clock())
            book.prefetch(timer.user_key for timer in timers)
            for timer in timers:
                run_id, timer_id, key, due = (
                    timer.run_id,
                    timer.timer_id,
                    timer.user_key,
                    timer.due_at,
                )
                session.delete(timer)
                user = book.get(book.owner(key))
                # A timer fires at its due time, like an event at its receive time, so a
                # user's timeline never runs backwards after downtime (in normal operation
                # the two differ by under a second).
                processor.fire(user, run_id, timer_id, due)
            book.flush()

        def drop(session: Session, timer_id: str) -> None:
            timer = session.get(Timer, timer_id)
            if timer is not None:
                session.delete(timer)

        dead = self._isolated("timer", ids, str, handle, drop)
        return len(ids), dead

    # -- outbox --

    def dispatch(self) -> tuple[int, int]:
        """Claim due outbox messages, render and send them, record how each went.

        Providers are called outside any transaction, with the message id as the
        idempotency key: a crash before the record is written leaves the message
        claimed, and after its lease it is sent again with the same key.
        """
        now = self.clock()
        with self.db.transaction() as session:
            session.execute(  # claims of a dispatcher that died: try again
                update(Message)
                .where(Message.status == "sending", Message.claimed_until < now)
                .values(status="pending")
            )
            query = (
                select(Message)
                .where(Message.status == "pending", Message.send_at <= now)
                .order_by(Message.send_at, Message.message_id)
                .limit(self.batch_size)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            claimed = list(session.scalars(query))
            for message in claimed:
                message.status = "sending"
                message.claimed_until = now + CLAIM_LEASE
                message.tries += 1
            ids = [m.message_id for m in claimed]
        if not ids:
            return 0, 0
        deliveries: dict[str, Delivery] = {}

        def set_aside(session: Session, message_id: str) -> None:
            deliveries.pop(message_id, None)
            self._fail_message(session, message_id)

        def prepare(session: Session, batch: list[str]) -> None:
            self.catalog.refresh(session)
            for message_id in batch:
                delivery = self._prepare(session, message_id, self.clock())
                if delivery is not None:
                    deliveries[message_id] = delivery

        dead = self._isolated("message", ids, str, prepare, set_aside)
        for delivery in deliveries.values():
            delivery.send(self.senders)

        def record(session: Session, batch: list[str]) -> None:
            now = self.clock()
            processor, book, _ = self._processor(session, now)
            rows = session.scalars(select(Message).where(Message.message_id.in_(batch))).all()
            book.prefetch(row.user_key for row in rows)
            for row in rows:
                self._record(processor, book, row, deliveries[row.message_id], now)
            book.flush()

        dead += self._isolated("message", list(deliveries), str, record, set_aside)
        return len(ids), dead

    def _fail_message(self, session: Session, message_id: str) -> None:
        """Mark a dead-lettered message failed and, if its run can still move, move it on."""
        message = session.get(Message, message_id)
        if message is None:
            return
        message.status = "failed"
        message.reason = "engine error; see dead_letters"
        try:
            with session.begin_nested():
                now = self.clock()
                processor, book, _ = self._processor(session, now)
                user = book.get(book.owner(message.user_key))
                processor.delivered(user, message.run_id, DeliveryResult(message_id, "failed"), now)
                book.flush()
        # The failure may be in the run itself; then it waits for a replay of the dead letter.
        except Exception as exc:
            log.error("run %s stays on its send step: %s", message.run_id, type(exc).__name__)

    def _prepare(self, session: Session, message_id: str, now: datetime) -> Delivery | None:
        """Render one claimed message; None if it is no longer this dispatcher's to send."""
        message = session.get(Message, message_id)
        if message is None or message.status != "sending":
            return None
        run_row = session.get(Run, message.run_id)
        if run_row is None:
            return Delivery(problem="its run is gone")
        run = run_from_row(run_row)
        profile_row = session.get(Profile, owner_of(session, message.user_key))
        profile = dict(profile_row.traits) if profile_row else {}
        journey = self.catalog.journey(run.journey_id, run.version)
        ref = MessageRef(
            message.message_id,
            run.run_id,
            run.journey_id,
            run.user_id,
            message.step,
            message.channel,
            message.attempt,
        )
        try:
            content = render_message(
                journey,
                ref,
                run,
                profile,
                now,
                self.public_url,
                user_key=message.user_key,
                secret_key=self.secret_key,
            )
        except RenderError as exc:
            return Delivery(problem=str(exc))
        to = address_of(message.channel, profile)
        if to is None:  # gone since the policies passed it: like a bounce, it falls back
            return Delivery(problem="the address is gone", undeliverable=True)
        message.content = content
        return Delivery(OutboundMessage(message.message_id, message.channel, to, content))

    def _record(
        self,
        processor: Processor,
        book: SqlUserBook,
        message: Message,
        delivery: Delivery,
        now: datetime,
    ) -> None:
        """Write how one delivery went and move its run on."""
        if message.status != "sending":
            return
        message_id = message.message_id
        error = delivery.error
        outcome: DeliveryResult
        if delivery.problem is not None:
            message.status, message.reason, message.content = "failed", delivery.problem, None
            kind: Literal["failed", "undeliverable"] = (
                "undeliverable" if delivery.undeliverable else "failed"
            )
            outcome = DeliveryResult(message_id, kind)
        elif isinstance(error, TransientDeliveryError) and message.tries < MAX_TRIES:
            message.status, message.reason = "pending", str(error)
            message.send_at = now + backoff(message.tries, error.retry_after)
            return  # retried later; the run keeps waiting
        elif error is not None:
            message.status, message.content = "failed", None
            message.reason = (
                f"gave up after {message.tries} tries: {error}"
                if isinstance(error, TransientDeliveryError)
                else str(error)
            )
            outcome = DeliveryResult(message_id, "undeliverable")
        else:
            receipt = delivery.receipt
            assert receipt is not None
            message.status, message.reason, message.send_at = "sent", None, now
            message.provider = receipt.provider
            message.provider_message_id = receipt.provider_message_id
            outcome = DeliveryResult(message_id, "sent")
        user = book.get(book.owner(message.user_key))
        processor.delivered(user, message.run_id, outcome, now)


@dataclass
class Delivery:
    """One claimed message on its way out: what to send, or why not, and how it went."""

    outbound: OutboundMessage | None = None
    problem: str | None = None  # why it cannot be sent at all
    undeliverable: bool = False  # the problem lets the send fall back to its next channel
    receipt: Receipt | None = None
    error: Exception | None = None

    def send(self, senders: SenderRegistry) -> None:
        """Call the channel's provider (outside any transaction)."""
        if self.outbound is None:
            return
        try:
            self.receipt = senders.for_channel(self.outbound.channel).send(self.outbound)
        except (TransientDeliveryError, PermanentDeliveryError) as exc:
            self.error = exc
        # A sender that breaks its contract (any other exception) gets the bounded
        # retries of a transient failure, with the error kept as the reason.
        except Exception as exc:
            self.error = TransientDeliveryError(f"{type(exc).__name__}: {exc}")


def apply_until_idle(engine: LiveEngine, rounds: int = 1000) -> list[Work]:
    """Run rounds until one does nothing (for tests and `journey run --once`)."""
    done: list[Work] = []
    for _ in range(rounds):
        work = engine.run_once()
        done.append(work)
        if not work.any:
            break
    return done
