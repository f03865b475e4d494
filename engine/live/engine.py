"""The live engine of one process: the services over one database, and their settings.

:class:`LiveEngine` builds the deployed catalog and the two services that carry out the
engine's decisions (``engine.services``): applying inputs (pending events and due timers,
partition by partition) and delivering the outbox. Any number of processes may run one
on the same database; claims in the database keep their work apart. ``journey run``
drives it from threads (``engine.live.embedded``); tests drive it round by round.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from engine.channels.senders import SenderRegistry
from engine.messages import DEFAULT_PUBLIC_URL
from engine.services.inputs import InputService
from engine.services.outbox import OutboxService
from engine.services.work import Clock, Work
from engine.store.database import Database
from engine.store.deployments import DeployedCatalog


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LiveEngine:
    """The input and outbox services of one process, sharing a catalog and a clock."""

    db: Database
    senders: SenderRegistry = field(default_factory=SenderRegistry)
    clock: Clock = utc_now
    public_url: str = DEFAULT_PUBLIC_URL
    send_timeout: float = 10.0
    claim_lease: timedelta = timedelta(seconds=10)
    #: Signs unsubscribe links (JOURNEY_SECRET_KEY); made up when not given, so links are
    #: never signed with a guessable key (but then no server accepts them).
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    catalog: DeployedCatalog = field(init=False)
    inputs: InputService = field(init=False)
    outbox: OutboxService = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = DeployedCatalog(self.db)
        self.inputs = InputService(self.db, self.catalog, self.clock)
        self.outbox = OutboxService(
            self.db,
            self.catalog,
            self.clock,
            self.senders,
            self.public_url,
            lease=self.claim_lease,
            send_timeout=self.send_timeout,
            secret_key=self.secret_key,
        )

    def apply(self, partitions: Sequence[int] | None = None) -> Work:
        """Apply one claim's worth of pending events and due timers."""
        return self.inputs.handle(partitions)

    def dispatch(self, channels: Sequence[str] | None = None) -> Work:
        """Deliver one claim's worth of due messages."""
        return self.outbox.handle(channels)

    def run_once(self) -> Work:
        """Apply inputs until none is left for now, then deliver one batch."""
        work = Work()
        while True:
            applied = self.apply()
            work += applied
            if not applied.more or not applied.any:
                break
        return work + self.dispatch()

    def next_timer(self) -> datetime | None:
        """When the earliest timer comes due (None: no timers)."""
        return self.inputs.next_due()

    def next_message(self) -> datetime | None:
        """When the earliest waiting message comes due, or a claim runs out."""
        return self.outbox.next_due()


def apply_until_idle(engine: LiveEngine, rounds: int = 1000) -> list[Work]:
    """Run rounds until one does nothing (for tests and `journey run --once`)."""
    done: list[Work] = []
    for _ in range(rounds):
        work = engine.run_once()
        done.append(work)
        if not work.any and not work.more:
            break
    return done
