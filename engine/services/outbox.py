"""Delivering the outbox: claim due messages, render them, send them, record how each went.

**Claims.** A dispatcher claims a batch of due messages with a token of its own and a
short lease (``lease``), and a :class:`~engine.services.lease.LeaseKeeper` renews the
lease while the dispatcher works on them. A dispatcher that dies stops renewing, so its
messages are claimed again within one lease and sent again with the same idempotency key
(the message id). Only the owner of a claim records a result: a dispatcher that lost its
claim (it stalled past its lease and someone else took over) finds its token gone and
discards what it got.

**Sending** happens outside any transaction, several messages at once. Providers time
their own calls out after ``send_timeout``; the dispatcher stops waiting for a call
``GRACE`` seconds later (a rate limit may make a call wait a little first) and counts it
as a transient failure.

**Tries.** Each claim counts a try. Transient failures back off and are retried up to
``max_tries``; a message whose claims keep running out (its dispatcher dies or hangs on
it every time) is given up after as many and set aside as a dead letter.

A step that fails for a reason of its own (a render bug, a broken run) is retried one
message at a time, and the message that still fails is set aside: it never blocks the rest.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from engine.channels.backoff import Backoff
from engine.channels.senders import OutboundMessage, Receipt, SenderRegistry
from engine.errors import (
    DeliveryDeferred,
    InvalidAddress,
    PermanentDeliveryError,
    RenderError,
    TransientDeliveryError,
)
from engine.messages import DEFAULT_PUBLIC_URL, address_of, render_message, unsubscribe_url
from engine.metrics import count_outcomes, provider_timer
from engine.processor import Processor
from engine.runs import DeliveryResult, MessageRef
from engine.services.lease import LeaseKeeper
from engine.services.session import open_processor
from engine.services.work import Clock, Work, dead_letter, is_passing
from engine.store.address_blocks import UNDELIVERABLE, blocked
from engine.store.database import Database, after_commit
from engine.store.deployments import DeployedCatalog
from engine.store.schema import JourneyState, Message, Profile, Run
from engine.store.users import SqlUserBook, owners_of, run_from_row

log = logging.getLogger("journey.dispatch")

#: Seconds the dispatcher waits for a provider call beyond ``send_timeout``.
GRACE = 2.0
#: Seconds between recording the results that came in (a crash repeats at most these).
RECORD_EVERY = 0.2


@dataclass
class Delivery:
    """One claimed message on its way out: what to send, or why not, and how it went."""

    outbound: OutboundMessage | None = None
    problem: str | None = None  # why it cannot be sent at all
    undeliverable: bool = False  # the problem lets the send fall back to its next channel
    suppressed: bool = False  # the address is blocked: suppressed as undeliverable
    receipt: Receipt | None = None
    error: Exception | None = None
    started: float | None = None  # monotonic time the provider call began
    _settled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, senders: SenderRegistry) -> None:
        """Call the channel's provider (outside any transaction)."""
        if self.outbound is None:
            return
        self.started = time.monotonic()
        receipt: Receipt | None = None
        error: Exception | None = None
        sender = senders.for_channel(self.outbound.channel)
        try:
            with provider_timer(self.outbound.channel, sender):
                receipt = sender.send(self.outbound)
        except (TransientDeliveryError, PermanentDeliveryError) as exc:
            error = exc
        # A sender that breaks its contract (any other exception) gets the bounded
        # retries of a transient failure, with the error kept as the reason.
        except Exception as exc:
            error = TransientDeliveryError(f"{type(exc).__name__}: {exc}")
        self._settle(receipt, error)

    def time_out(self, seconds: float) -> None:
        """The provider took too long: a transient failure (a late answer is ignored)."""
        self._settle(None, TransientDeliveryError(f"no answer within {seconds:g} s"))

    def _settle(self, receipt: Receipt | None, error: Exception | None) -> None:
        with self._lock:
            if not self._settled:
                self.receipt, self.error, self._settled = receipt, error, True


@dataclass
class Claim:
    """Messages claimed under one token, on their way through prepare, send and record."""

    token: str
    ids: list[str] = field(default_factory=list)  # to send
    abandoned: list[str] = field(default_factory=list)  # claimed too often: to give up
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    work: Work = field(default_factory=Work)

    @property
    def any(self) -> bool:
        return bool(self.ids or self.abandoned)


@dataclass
class OutboxService:
    """Claims due outbox messages and delivers them."""

    db: Database
    catalog: DeployedCatalog
    clock: Clock
    senders: SenderRegistry = field(default_factory=SenderRegistry)
    public_url: str = DEFAULT_PUBLIC_URL
    batch_size: int = 100
    lease: timedelta = timedelta(seconds=10)
    send_timeout: float = 10.0
    concurrency: int = 8
    backoff: Backoff = field(default_factory=Backoff)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @property
    def max_tries(self) -> int:
        return self.backoff.max_tries

    def handle(self, channels: Sequence[str] | None = None) -> Work:
        """One round: claim due messages (of ``channels``, or any), deliver, record."""
        claim = self.claim(channels)
        if not claim.any:
            return claim.work
        with LeaseKeeper(self.db, claim.token, self.lease, self.clock):
            self.give_up(claim)
            self.prepare(claim)
            unsendable = [i for i, d in claim.deliveries.items() if d.outbound is None]
            self.record(claim, unsendable)
            # Results are recorded as they come in: the fewer calls made but not yet
            # recorded, the fewer a crash can repeat.
            for settled in self._sending(claim):
                self.record(claim, settled)
        return claim.work

    def claim(self, channels: Sequence[str] | None = None) -> Claim:
        """Claim due messages and lapsed claims, under a new token, for one lease."""
        claim = Claim(secrets.token_hex(8))
        now = self.clock()
        with self.db.transaction() as session:
            due = or_(
                and_(Message.status == "pending", Message.send_at <= now),
                and_(Message.status == "sending", Message.claimed_until < now),
            )
            held = select(JourneyState.journey_id).where(JourneyState.state == "paused")
            query = select(Message).where(due, Message.journey_id.not_in(held))
            if channels is not None:
                query = query.where(Message.channel.in_(list(channels)))
            query = query.order_by(Message.send_at, Message.message_id).limit(self.batch_size)
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            for message in session.scalars(query):
                lapsed = message.status == "sending"
                message.status, message.claimed_by = "sending", claim.token
                message.claimed_until = now + self.lease
                if lapsed and message.tries >= self.max_tries:
                    claim.abandoned.append(message.message_id)
                    continue
                if lapsed:
                    log.warning("message %s: its claim ran out; sending again", message.message_id)
                message.tries += 1
                claim.ids.append(message.message_id)
        claim.work = Work(
            messages=len(claim.ids),
            more=len(claim.ids) + len(claim.abandoned) >= self.batch_size,
        )
        return claim

    def give_up(self, claim: Claim) -> None:
        """Set aside the claimed messages whose every claim ran out, and move their runs on."""
        for message_id in claim.abandoned:
            with self.db.transaction() as session:
                message = session.get(Message, message_id)
                if message is None or message.claimed_by != claim.token:
                    continue
                reason = f"gave up after {message.tries} tries: no dispatcher finished sending it"
                dead_letter(session, "message", message_id, RuntimeError(reason), self.clock())
                self._fail_message(session, message_id, reason)
                claim.work.dead += 1

    def prepare(self, claim: Claim) -> None:
        """Render the claimed messages (in one transaction, isolated on failure)."""

        def prepare(session: Session, batch: list[str]) -> None:
            self.catalog.refresh(session)
            session.autoflush = False  # the rows are loaded up front; content written at commit
            messages = session.scalars(
                select(Message).where(
                    Message.message_id.in_(batch),
                    Message.status == "sending",
                    Message.claimed_by == claim.token,
                )
            ).all()
            runs = {
                row.run_id: row
                for row in session.scalars(
                    select(Run).where(Run.run_id.in_({m.run_id for m in messages}))
                )
            }
            owners = owners_of(session, (m.user_key for m in messages))
            profiles = {
                row.user_key: dict(row.traits or {})
                for row in session.scalars(
                    select(Profile).where(Profile.user_key.in_(set(owners.values())))
                )
            }
            now = self.clock()
            for message in messages:
                profile = profiles.get(owners[message.user_key], {})
                run = runs.get(message.run_id)
                claim.deliveries[message.message_id] = self._prepare(message, run, profile, now)
            self._refuse_blocked(session, claim)

        claim.work.dead += self._isolated(claim.ids, prepare, claim)

    @staticmethod
    def _refuse_blocked(session: Session, claim: Claim) -> None:
        """Messages to addresses a provider refused for good are suppressed, not sent."""
        by_channel: dict[str, dict[str, str]] = {}
        for message_id, delivery in claim.deliveries.items():
            if delivery.outbound is not None:
                out = delivery.outbound
                by_channel.setdefault(out.channel, {})[message_id] = out.to
        for channel, addresses in by_channel.items():
            refused = blocked(session, channel, addresses.values())
            for message_id, address in addresses.items():
                if address in refused:
                    claim.deliveries[message_id] = Delivery(
                        problem=refused[address], undeliverable=True, suppressed=True
                    )

    def send(self, claim: Claim) -> None:
        """Call the providers, ``concurrency`` at a time, each within ``send_timeout``."""
        for _ in self._sending(claim):
            pass

    def record(self, claim: Claim, message_ids: Sequence[str] | None = None) -> None:
        """Write how each delivery went (of ``message_ids``, or all) and move the runs on,
        where the claim is still ours."""
        ids = list(claim.deliveries) if message_ids is None else list(message_ids)

        def record(session: Session, batch: list[str]) -> None:
            now = self.clock()
            self.catalog.refresh(session)
            processor, book, effects = open_processor(session, self.catalog, now)
            book.prefetch(
                session.scalars(select(Message.user_key).where(Message.message_id.in_(batch)))
            )
            mine = select(Message).where(
                Message.message_id.in_(batch),
                Message.claimed_by == claim.token,
                Message.status == "sending",
            )
            if not self.db.is_sqlite:
                mine = mine.with_for_update()
            outcomes = []
            for row in session.scalars(mine):
                self._record(processor, book, row, claim.deliveries[row.message_id], now)
                outcomes.append((row.channel, row.status, row.reason))
            book.flush()
            claim.work.channels |= effects.due_channels  # fallbacks queued on other channels
            after_commit(session, lambda: count_outcomes(outcomes))

        claim.work.dead += self._isolated(ids, record, claim)

    def next_due(self) -> datetime | None:
        """When the earliest waiting message comes due, or a claim runs out."""
        with self.db.sessions() as session:
            due = session.scalar(
                select(func.min(Message.send_at)).where(Message.status == "pending")
            )
            lapse = session.scalar(
                select(func.min(Message.claimed_until)).where(Message.status == "sending")
            )
        moments = [m for m in (due, lapse) if m is not None]
        return min(moments) if moments else None

    # -- one step over a batch, isolated --

    def _isolated(
        self, items: list[str], handle: Callable[[Session, list[str]], None], claim: Claim
    ) -> int:
        """Run ``handle`` over the batch; if it fails for a reason of its own, one message
        per transaction, setting aside those that still fail. Returns how many were."""
        if not items:
            return 0
        try:
            with self.db.transaction() as session:
                handle(session, items)
            return 0
        except Exception as exc:
            if is_passing(exc):
                raise
            log.warning("a batch of %d messages failed; retrying one by one", len(items))
        dead = 0
        for item in items:
            try:
                with self.db.transaction() as session:
                    handle(session, [item])
            except Exception as exc:
                if is_passing(exc):
                    raise
                dead += 1
                claim.deliveries.pop(item, None)
                with self.db.transaction() as session:
                    dead_letter(session, "message", item, exc, self.clock())
                    self._fail_message(session, item)
        return dead

    # -- preparing, sending, recording --

    def _prepare(
        self, message: Message, run_row: Run | None, profile: dict[str, Any], now: datetime
    ) -> Delivery:
        """Render one claimed message for the profile it goes to."""
        if run_row is None:
            return Delivery(problem="its run is gone")
        run = run_from_row(run_row)
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
        link = {"user_key": message.user_key, "secret_key": self.secret_key}
        try:
            content = render_message(journey, ref, run, profile, now, self.public_url, **link)
        except RenderError as exc:
            return Delivery(problem=str(exc))
        to = address_of(message.channel, profile)
        if to is None:  # gone since the policies passed it: like a bounce, it falls back
            return Delivery(problem="the address is gone", undeliverable=True)
        message.content = content
        outbound = OutboundMessage(
            message.message_id,
            message.channel,
            to,
            content,
            unsubscribe_url=unsubscribe_url(
                self.public_url, message.message_id, channel=message.channel, **link
            ),
            locale=str(profile["locale"]) if isinstance(profile.get("locale"), str) else None,
        )
        return Delivery(outbound)

    def _still_claimed(self, token: str, message_ids: list[str]) -> set[str]:
        with self.db.sessions() as session:
            return set(
                session.scalars(
                    select(Message.message_id).where(
                        Message.message_id.in_(message_ids),
                        Message.claimed_by == token,
                        Message.status == "sending",
                    )
                )
            )

    def _sending(self, claim: Claim) -> Iterator[list[str]]:
        """Call the providers, ``concurrency`` at a time, each within ``send_timeout`` (and
        ``GRACE``); yields the ids of the messages whose calls ended, a few at a time."""
        todo = {i: d for i, d in claim.deliveries.items() if d.outbound is not None}
        if todo:  # a claim revoked since (the user was erased) must not reach the provider
            todo = {i: todo[i] for i in self._still_claimed(claim.token, list(todo))}
        if not todo:
            return
        threads = min(self.concurrency, len(todo))
        patience = self.send_timeout + GRACE
        # A provider that never answers keeps its thread; the pool is not waited for, and
        # messages still queued behind hung calls time out with the batch.
        pool = ThreadPoolExecutor(threads, "journey-send")
        batch_deadline = time.monotonic() + patience * (-(-len(todo) // threads) + 1)
        try:
            running: dict[Future[None], str] = {
                pool.submit(d.send, self.senders): i for i, d in todo.items()
            }
            while running:
                done, _ = wait(running, timeout=RECORD_EVERY, return_when=ALL_COMPLETED)
                settled = [running.pop(future) for future in done]
                now = time.monotonic()
                for future, message_id in list(running.items()):
                    started = todo[message_id].started
                    if (started is not None and started < now - patience) or (now > batch_deadline):
                        todo[message_id].time_out(patience)
                        settled.append(running.pop(future))
                if settled:
                    yield settled
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _record(
        self,
        processor: Processor,
        book: SqlUserBook,
        message: Message,
        delivery: Delivery,
        now: datetime,
    ) -> None:
        """Write how one delivery went, release the claim, and move the run on."""
        message_id = message.message_id
        error = delivery.error
        outcome: DeliveryResult
        message.claimed_by, message.claimed_until = None, None
        if delivery.suppressed:
            message.status, message.reason, message.content = "suppressed", UNDELIVERABLE, None
            outcome = DeliveryResult(message_id, "undeliverable")
            log.info("message %s: its address was refused for good earlier", message_id)
        elif delivery.problem is not None:
            message.status, message.reason, message.content = "failed", delivery.problem, None
            kind: Literal["failed", "undeliverable"] = (
                "undeliverable" if delivery.undeliverable else "failed"
            )
            outcome = DeliveryResult(message_id, kind)
        elif isinstance(error, DeliveryDeferred):  # the provider was not called: no try
            message.status, message.reason = "pending", str(error)
            message.tries = max(0, message.tries - 1)
            message.send_at = now + timedelta(seconds=max(error.retry_after or 1.0, 0.1))
            return
        elif isinstance(error, TransientDeliveryError) and message.tries < self.max_tries:
            message.status, message.reason = "pending", str(error)
            delay = self.backoff.delay(message.tries, error.retry_after)
            message.send_at = now + timedelta(seconds=delay)
            return  # retried later; the run keeps waiting
        elif error is not None:
            message.status, message.content = "failed", None
            message.reason = (
                f"gave up after {message.tries} tries: {error}"
                if isinstance(error, TransientDeliveryError)
                else str(error)
            )
            if isinstance(error, InvalidAddress) and error.clear:
                self._forget_address(book, message.user_key, error.trait)
            outcome = DeliveryResult(message_id, "undeliverable")
        elif delivery.receipt is None:  # no outcome at all: treat as lost, retry
            message.status, message.reason = "pending", "no outcome recorded"
            return
        else:
            receipt = delivery.receipt
            message.status, message.reason, message.send_at = "sent", None, now
            message.provider = receipt.provider
            message.provider_message_id = receipt.provider_message_id
            message.segments = receipt.segments
            outcome = DeliveryResult(message_id, "sent")
        at = book.input_time([message.user_key], now)
        processor.delivered(book.get(book.owner(message.user_key)), message.run_id, outcome, at)
        book.applied([message.user_key], at)

    @staticmethod
    def _forget_address(book: SqlUserBook, key: str, trait: str) -> None:
        """The provider says the address no longer exists (an unregistered push token)."""
        user = book.get(book.owner(key))
        if trait in user.profile:
            user.profile = {k: v for k, v in user.profile.items() if k != trait}
            log.info("cleared the %s trait of a user: the provider says it no longer exists", trait)

    def _fail_message(self, session: Session, message_id: str, reason: str | None = None) -> None:
        """Mark a set-aside message failed and, if its run can still move, move it on."""
        message = session.get(Message, message_id)
        if message is None:
            return
        message.status = "failed"
        message.reason = reason or "engine error; see dead_letters"
        after_commit(session, lambda: count_outcomes([(message.channel, "failed", None)]))
        message.claimed_by, message.claimed_until = None, None
        try:
            with session.begin_nested():
                now = self.clock()
                self.catalog.refresh(session)
                processor, book, _ = open_processor(session, self.catalog, now)
                at = book.input_time([message.user_key], now)
                user = book.get(book.owner(message.user_key))
                processor.delivered(user, message.run_id, DeliveryResult(message_id, "failed"), at)
                book.applied([message.user_key], at)
                book.flush()
        # The failure may be in the run itself; then it waits for a replay of the dead letter.
        except Exception as exc:
            if is_passing(exc):
                raise
            log.error("run %s stays on its send step: %s", message.run_id, type(exc).__name__)
