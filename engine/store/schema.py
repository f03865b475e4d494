"""The tables. Every piece of engine state lives here; the broker only rings doorbells.

Time columns hold timezone-aware UTC datetimes (``UtcDateTime``), on SQLite too.
Ids are text: user keys are ``user:<userId>`` or ``anon:<anonymousId>``
(``engine.identity``), run and message ids are the runtime's deterministic ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = 512  # Segment ids may be long; keys add a short prefix


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the backend keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BigInteger autoincrement keys are plain INTEGER on SQLite, so rowid aliasing works there.
SeqId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


class Profile(Base):
    """A user's merged traits, under the key that owns them."""

    __tablename__ = "profiles"
    user_key: Mapped[str] = mapped_column(String(ID), primary_key=True)
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The time of the latest input (event, timer, delivery result) applied to this user: a
    # later input is never applied before it, so the user's timeline only moves forward.
    input_at: Mapped[datetime | None]


class Identity(Base):
    """``alias_key`` (an anonymous id or an earlier user id) now belongs to ``owner_key``."""

    __tablename__ = "identities"
    alias_key: Mapped[str] = mapped_column(String(ID), primary_key=True)
    owner_key: Mapped[str] = mapped_column(String(ID), index=True)
    linked_at: Mapped[datetime]


class Partition(Base):
    """One of a fixed number of partitions of users (``engine.store.partitions``).

    A worker locks partition rows (``FOR UPDATE SKIP LOCKED``) to claim the pending events
    and due timers of the users in them: one claim, one worker, no one else meanwhile.
    """

    __tablename__ = "partitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class StoredEvent(Base):
    """An accepted Segment message, pending until the engine applies it.

    ``user_key`` is the key the event is routed by (its userId's, else its anonymousId's)
    and ``partition`` that key's partition. A user's events apply in ``received_at`` order
    (``seq`` among equal times).
    """

    __tablename__ = "events"
    seq: Mapped[int] = mapped_column(SeqId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(ID), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(String(ID))
    anonymous_id: Mapped[str | None] = mapped_column(String(ID))
    timestamp: Mapped[datetime]  # the event's own time, as sent
    received_at: Mapped[datetime]  # live timing uses this
    payload: Mapped[dict[str, Any]]  # the message as received
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|processed|failed
    processed_at: Mapped[datetime | None]
    user_key: Mapped[str] = mapped_column(String(ID))
    partition: Mapped[int] = mapped_column(Integer)
    purged_at: Mapped[datetime | None]  # when its payload was purged (retention)

    __table_args__ = (
        # Only pending events are looked up by partition: a small index, whatever the history.
        Index(
            "ix_events_pending",
            "partition",
            "user_key",
            "received_at",
            "seq",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # A user's history (their export, their erasure, their timeline).
        Index("ix_events_user_key", "user_key"),
    )


class Deployment(Base):
    """One deployed journey directory: its files, so any version can be compiled again."""

    __tablename__ = "deployments"
    id: Mapped[int] = mapped_column(SeqId, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64))  # hash of every file
    files: Mapped[dict[str, Any]]  # {"journeys/x.yaml": text, "templates/...": text}
    journeys: Mapped[dict[str, Any]]  # {journey id: version} of every journey it holds
    created_at: Mapped[datetime]


class JourneyVersion(Base):
    """A journey as compiled in a deployment; runs are pinned to one."""

    __tablename__ = "journey_versions"
    journey_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"))
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Run(Base):
    """One user's pass through one journey version. ``state`` holds the runtime's RunState."""

    __tablename__ = "runs"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_key: Mapped[str] = mapped_column(String(ID))
    journey_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # active|completed|exited
    step: Mapped[str | None] = mapped_column(String(128))
    entered_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    converted_at: Mapped[datetime | None]
    goal_until: Mapped[datetime | None]  # end of the conversion window, while open
    state: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_runs_user_key_entered_at", "user_key", "entered_at"),
        # Conversion windows still open (the only count a report makes from runs).
        Index(
            "ix_runs_journey_id_goal_until",
            "journey_id",
            "goal_until",
            postgresql_where=text("goal_until IS NOT NULL"),
            sqlite_where=text("goal_until IS NOT NULL"),
        ),
    )


class Entry(Base):
    """How often and when a user last entered a journey (re-entry rules)."""

    __tablename__ = "entries"
    user_key: Mapped[str] = mapped_column(String(ID), primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    count: Mapped[int]
    last_entered_at: Mapped[datetime]


class Timer(Base):
    """A durable timer. Delays of days are rows here, never broker countdowns."""

    __tablename__ = "timers"
    timer_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    # Set order, for timers due at the same instant: increasing within a process, which
    # is all the order the format needs (one user's inputs are applied one at a time).
    seq: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[str] = mapped_column(String(64))
    user_key: Mapped[str] = mapped_column(String(ID), index=True)
    due_at: Mapped[datetime]
    partition: Mapped[int] = mapped_column(Integer)  # the user's: moves with the timer on a merge

    __table_args__ = (
        Index("ix_timers_due_at_seq", "due_at", "seq"),
        Index("ix_timers_partition_due_at", "partition", "due_at"),
    )


class Message(Base):
    """One message attempt: the outbox row, its delivery record and its cap slot.

    status: ``scheduled`` (deferred by quiet hours), ``pending`` (to dispatch),
    ``sending`` (claimed by the dispatcher holding ``claimed_by`` until ``claimed_until``,
    a lease renewed while it sends), ``sent``, ``failed``, ``suppressed``,
    ``cancelled``; after a provider's delivery report, ``delivered`` or ``bounced`` (or
    ``failed``). Scheduled, pending, sending, sent, delivered and bounced messages count
    toward caps at ``send_at``.
    """

    __tablename__ = "messages"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    user_key: Mapped[str] = mapped_column(String(ID))
    journey_id: Mapped[str] = mapped_column(String(128))
    step: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(default=0)  # index of the channel in the send's list
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    send_at: Mapped[datetime]
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    provider: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(256))
    tries: Mapped[int] = mapped_column(default=0)  # claims so far: deliveries attempted
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(64))  # the dispatcher's claim token
    segments: Mapped[int | None]  # billable parts of a sent SMS, as the provider counts them
    reported_at: Mapped[datetime | None]  # when the provider last reported on it
    version: Mapped[str | None] = mapped_column(String(64))  # of the journey, as its run

    __table_args__ = (
        Index("ix_messages_user_key_send_at", "user_key", "send_at"),
        Index("ix_messages_status_send_at", "status", "send_at"),
    )


class DeadLetter(Base):
    """Work that could not be processed, with its error; it never blocks the rest."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(SeqId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # event|timer|message
    ref: Mapped[str] = mapped_column(String(ID))
    error: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime]
    replayed_at: Mapped[datetime | None]


class ConsentChange(Base):
    """A change of a user's consent to a channel made outside the event stream (an
    unsubscribe link), with the value it replaced; ``engine.store.consent`` writes it."""

    __tablename__ = "consent_changes"
    id: Mapped[int] = mapped_column(SeqId, primary_key=True, autoincrement=True)
    user_key: Mapped[str] = mapped_column(String(ID))  # the profile's owner at the time
    channel: Mapped[str] = mapped_column(String(32))
    subscribed: Mapped[bool]
    previous: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)  # as it was
    source: Mapped[str] = mapped_column(String(32))  # unsubscribe_page | one_click
    message_id: Mapped[str | None] = mapped_column(String(64))  # whose link was used
    changed_at: Mapped[datetime]

    __table_args__ = (Index("ix_consent_changes_user_key_changed_at", "user_key", "changed_at"),)


class ClaimAttempt(Base):
    """Rounds over a partition that began and never committed: the worker died mid-round.

    Counted in a transaction of its own before a round applies anything, and cleared by
    the round's commit, so what is left counts consecutive deaths. A partition that keeps
    killing its workers is applied one input at a time, and the input that killed a worker
    on its own is set aside as a dead letter instead of looping (``engine.services.poison``).
    """

    __tablename__ = "claim_attempts"
    partition: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    attempts: Mapped[int]
    ref: Mapped[str | None] = mapped_column(String(ID))  # the input tried alone, if one was
    updated_at: Mapped[datetime]


class AddressBlock(Base):
    """An address a provider refused for good (``engine.store.address_blocks``)."""

    __tablename__ = "address_blocks"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # of channel + address
    channel: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(64))  # whose report revealed it
    created_at: Mapped[datetime]


class Forgotten(Base):
    """An id whose user was erased on request (``engine.store.privacy``): later events
    under it are dropped and counted, until an ``identify`` carries new consent."""

    __tablename__ = "forgotten"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # of the user key
    forgotten_at: Mapped[datetime]
    dropped: Mapped[int] = mapped_column(default=0)  # events dropped since


class JourneyState(Base):
    """A journey paused or stopped by ops (``engine.store.lifecycle``); absent: running."""

    __tablename__ = "journey_states"
    journey_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # paused | stopped
    changed_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))


class AuditEntry(Base):
    """One operator action (a deploy, a replay, a discard...): who, what, on what, when
    (``engine.store.audit``)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(SeqId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))  # an admin token's name, or an OS user
    action: Mapped[str] = mapped_column(String(32))  # deploy|replay|discard|pause|...
    target: Mapped[str] = mapped_column(String(ID))  # a deployment, a dead letter, a journey
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))


class _StatKey:
    """What a journey counter counts: a metric, of a journey version, for a step, a
    channel, a status and a reason ('' where one does not apply)."""

    journey_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    n: Mapped[float] = mapped_column(Double)


class StatDelta(_StatKey, Base):
    """A change to a counter, written by the database's triggers on runs and messages
    (migration 0010) and folded into ``stat_counters`` (``engine.store.stat_counters``)."""

    __tablename__ = "stat_deltas"
    id: Mapped[int] = mapped_column(SeqId, primary_key=True, autoincrement=True)


class StatCounter(_StatKey, Base):
    """A journey counter: the sum of the deltas folded so far."""

    __tablename__ = "stat_counters"
    __table_args__ = (
        PrimaryKeyConstraint(
            "journey_id", "version", "metric", "step", "channel", "status", "reason"
        ),
    )
