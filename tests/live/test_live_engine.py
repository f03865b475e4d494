"""The live engine on a real database: events in, timers fired, outbox delivered."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.channels.senders import RecordingSender, SenderRegistry
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.live.engine import LiveEngine, apply_until_idle
from engine.project import SourceTree
from engine.services.outbox import OutboxService
from engine.store.database import Database
from engine.store.deployments import deploy
from engine.store.ingest import Ingestor
from engine.store.schema import DeadLetter, Message, Run, StoredEvent, Timer
from tests.live.clock import Clock

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def identify(user: str, **traits: object) -> dict[str, object]:
    return {"type": "identify", "userId": user, "traits": traits, "messageId": f"id-{user}"}


def track(user: str, name: str, message_id: str, **properties: object) -> dict[str, object]:
    return {
        "type": "track",
        "userId": user,
        "event": name,
        "properties": properties,
        "messageId": message_id,
    }


LI = {
    "email": "li@example.com",
    "phone": "+8613800000001",
    "locale": "zh-CN",
    "timezone": "Asia/Shanghai",
    "subscriptions": {"sms": True},
    "push_token": "tok-1",
}


@pytest.fixture
def live(db: Database, clock: Clock) -> LiveEngine:
    deploy(db, SourceTree.from_directory(ROOT / "journeys"), now=clock())
    return LiveEngine(db, clock=clock)


def messages(db: Database) -> list[Message]:
    with db.transaction() as session:
        return list(
            session.scalars(select(Message).order_by(Message.created_at, Message.message_id))
        )


def test_cart_abandon_runs_live_with_timers(db: Database, live: LiveEngine, clock: Clock) -> None:
    ingest = Ingestor(db)
    ingest.ingest([identify("u1", **LI)], now=clock())
    ingest.ingest([track("u1", "Product Added", "m1", price=120)], now=clock())
    apply_until_idle(live)
    with db.transaction() as session:
        run = session.scalars(select(Run).where(Run.journey_id == "cart_abandon")).one()
        assert run.status == "active" and run.step == "wait_an_hour"
        assert session.scalar(select(func.count()).select_from(Timer)) == 1
        assert (
            session.scalar(select(StoredEvent.status).where(StoredEvent.message_id == "m1"))
            == "processed"
        )
    clock.advance(timedelta(minutes=59))
    apply_until_idle(live)
    assert [m.step for m in messages(db) if m.journey_id == "cart_abandon"] == []
    clock.advance(timedelta(minutes=1))
    apply_until_idle(live)
    push = [m for m in messages(db) if m.journey_id == "cart_abandon"]
    assert [(m.channel, m.status) for m in push] == [("push", "sent")]
    assert push[0].content and push[0].provider == "local"
    clock.advance(timedelta(hours=23))
    apply_until_idle(live)
    sent = [(m.channel, m.status) for m in messages(db) if m.journey_id == "cart_abandon"]
    assert sent == [("push", "sent"), ("sms", "sent")]
    with db.transaction() as session:
        run = session.scalars(select(Run).where(Run.journey_id == "cart_abandon")).one()
        assert run.status == "completed"
        assert session.scalar(select(func.count()).select_from(Timer)) == 0


def test_order_exits_the_run_and_cancels_its_timer(
    db: Database, live: LiveEngine, clock: Clock
) -> None:
    ingest = Ingestor(db)
    ingest.ingest([identify("u1", **LI), track("u1", "Product Added", "m1")], now=clock())
    apply_until_idle(live)
    clock.advance(timedelta(minutes=10))
    ingest.ingest(
        [track("u1", "Order Completed", "m2", order_id="o1", category="beauty")], now=clock()
    )
    apply_until_idle(live)
    with db.transaction() as session:
        cart = session.scalars(select(Run).where(Run.journey_id == "cart_abandon")).one()
        assert cart.status == "exited" and cart.converted_at == clock()
        timers = list(session.scalars(select(Timer.run_id)))
        assert cart.run_id not in timers  # its wait was cancelled
    clock.advance(timedelta(hours=2))
    apply_until_idle(live)
    assert not [m for m in messages(db) if m.journey_id == "cart_abandon"]


def test_quiet_hours_defer_to_morning_in_the_user_zone(
    db: Database, live: LiveEngine, clock: Clock
) -> None:
    clock.now = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 21:00 Shanghai
    Ingestor(db).ingest([identify("u1", **LI), track("u1", "Product Added", "m1")], now=clock())
    apply_until_idle(live)
    clock.advance(timedelta(hours=1))  # the push is due at 22:00: deferred to 08:00
    apply_until_idle(live)
    (push,) = [m for m in messages(db) if m.journey_id == "cart_abandon"]
    assert push.status == "scheduled" and push.send_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    clock.now = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    apply_until_idle(live)
    (push,) = [m for m in messages(db) if m.journey_id == "cart_abandon"]
    assert push.status == "sent"


def test_permanent_failure_falls_back_and_transient_retries(db: Database, clock: Clock) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def send(self, message):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 1:
                raise TransientDeliveryError("busy", retry_after=30)
            raise PermanentDeliveryError("no such WeCom user")

    deploy(db, SourceTree.from_directory(ROOT / "journeys"), now=clock())
    sms = RecordingSender()
    wecom = Flaky()
    live = LiveEngine(db, SenderRegistry({"wecom": wecom, "sms": sms}), clock=clock)
    Ingestor(db).ingest(
        [identify("u1", **LI, wecom_userid="w1"), track("u1", "Signed Up", "m1")], now=clock()
    )
    apply_until_idle(live)
    clock.now = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)  # 10:00 next morning: the tip
    apply_until_idle(live)
    tip = [m for m in messages(db) if m.step == "wecom_tip"]
    assert [(m.channel, m.status) for m in tip] == [("wecom", "pending")]
    clock.advance(timedelta(seconds=33))  # the provider's 30 s, and up to 10% of jitter
    apply_until_idle(live)
    tip = {m.channel: m for m in messages(db) if m.step == "wecom_tip"}
    assert tip["wecom"].status == "failed" and tip["wecom"].tries == 2
    assert tip["sms"].status == "sent" and list(sms.sent) == [tip["sms"].message_id]


def test_a_bad_event_is_dead_lettered_and_blocks_nothing(
    db: Database, live: LiveEngine, clock: Clock
) -> None:
    Ingestor(db).ingest([identify("u1", **LI), track("u1", "Product Added", "m1")], now=clock())
    with db.transaction() as session:  # corrupt one stored event behind the API's back
        row = session.scalars(select(StoredEvent).where(StoredEvent.message_id == "m1")).one()
        row.payload = {"type": "track", "userId": "u1"}
    Ingestor(db).ingest([track("u1", "Signed Up", "m2")], now=clock())
    apply_until_idle(live)
    with db.transaction() as session:
        statuses = dict(session.execute(select(StoredEvent.message_id, StoredEvent.status)).all())
        assert statuses == {"id-u1": "processed", "m1": "failed", "m2": "processed"}
        (dead,) = session.scalars(select(DeadLetter)).all()
        assert dead.kind == "event" and "event" in dead.error
    assert [m.step for m in messages(db)] == ["welcome_email"]


class Crash(BaseException):
    """The process dies: nothing after it runs, no handler sees it."""


def test_a_crash_after_sending_resends_with_the_same_idempotency_key(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(db, SourceTree.from_directory(ROOT / "journeys"), now=clock())
    email = RecordingSender()
    live = LiveEngine(db, SenderRegistry({"email": email}), clock=clock)
    Ingestor(db).ingest([identify("u1", **LI), track("u1", "Signed Up", "m1")], now=clock())
    live.apply()

    def die(*args: object) -> None:
        raise Crash

    monkeypatch.setattr(OutboxService, "_record", die)
    with pytest.raises(Crash):
        live.dispatch()  # the provider got the message; its record was never written
    monkeypatch.undo()
    (claimed,) = messages(db)
    assert claimed.status == "sending" and len(email.calls) == 1
    live.dispatch()
    assert messages(db)[0].status == "sending"  # still leased to the dead dispatcher
    clock.advance(timedelta(seconds=11))  # the lease runs out: another dispatcher retries
    apply_until_idle(live)
    (message,) = messages(db)
    assert message.status == "sent" and message.tries == 2
    assert email.calls == [message.message_id, message.message_id]  # same key both times
    assert list(email.sent) == [message.message_id]  # so the provider delivered it once


def write_journey(root: Path, text: str) -> SourceTree:
    (root / "journeys").mkdir(exist_ok=True)
    (root / "journeys" / "nudge.yaml").write_text(text)
    return SourceTree.from_directory(root / "journeys")


NUDGE = """
id: nudge
name: Nudge
trigger: {{event: Started}}
start: pause
steps:
  pause: {{wait: 1h, next: say}}
  say:
    send: {{channel: sms, content: {{text: "{text}"}}}}
    next: end
"""


def test_runs_keep_their_version_and_new_runs_take_the_new_one(
    db: Database, clock: Clock, tmp_path: Path
) -> None:
    first = deploy(db, write_journey(tmp_path, NUDGE.format(text="version one")), now=clock())
    live = LiveEngine(db, clock=clock)
    ingest = Ingestor(db)
    ingest.ingest([identify("old", phone="+1"), track("old", "Started", "m1")], now=clock())
    apply_until_idle(live)
    second = deploy(db, write_journey(tmp_path, NUDGE.format(text="version two")), now=clock())
    assert second.deployment_id != first.deployment_id and not second.unchanged
    again = deploy(db, write_journey(tmp_path, NUDGE.format(text="version two")), now=clock())
    assert again.unchanged and again.deployment_id == second.deployment_id
    ingest.ingest([identify("new", phone="+2"), track("new", "Started", "m2")], now=clock())
    apply_until_idle(live)  # the same engine object: no restart
    clock.advance(timedelta(hours=1))
    apply_until_idle(live)
    texts = {m.user_key: (m.content or {}).get("text") for m in messages(db)}
    assert texts == {"user:old": "version one", "user:new": "version two"}
    with db.transaction() as session:
        versions = dict(session.execute(select(Run.user_key, Run.version)).all())
    assert versions["user:old"] == dict(first.journeys)["nudge"]
    assert versions["user:new"] == dict(second.journeys)["nudge"]


def test_a_directory_that_does_not_compile_deploys_nothing(db: Database, tmp_path: Path) -> None:
    from engine.errors import CompileError

    with pytest.raises(CompileError):
        deploy(db, write_journey(tmp_path, NUDGE.format(text="x").replace("wait: 1h", "wait: 0s")))
    with db.transaction() as session:
        from engine.store.schema import Deployment

        assert session.scalar(select(func.count()).select_from(Deployment)) == 0


def test_an_anonymous_visitor_identified_later_keeps_their_journey(
    db: Database, live: LiveEngine, clock: Clock
) -> None:
    from engine.store.schema import Identity, Profile

    ingest = Ingestor(db)
    anonymous = {
        "type": "track",
        "anonymousId": "a1",
        "event": "Product Added",
        "properties": {},
        "messageId": "m1",
    }
    ingest.ingest([anonymous], now=clock())
    apply_until_idle(live)
    clock.advance(timedelta(minutes=5))
    link = {
        "type": "identify",
        "userId": "u1",
        "anonymousId": "a1",
        "traits": LI,
        "messageId": "m2",
    }
    ingest.ingest([link], now=clock())
    apply_until_idle(live)
    with db.transaction() as session:
        assert session.get(Identity, "anon:a1").owner_key == "user:u1"  # type: ignore[union-attr]
        assert session.get(Profile, "anon:a1") is None
        (run,) = session.scalars(select(Run)).all()
        assert run.user_key == "user:u1" and run.status == "active"
        assert set(session.scalars(select(Timer.user_key))) == {"user:u1"}
    clock.advance(timedelta(hours=1))
    apply_until_idle(live)
    (push,) = messages(db)
    assert push.user_key == "user:u1" and push.status == "sent" and push.channel == "push"
    # later events under the anonymous id reach the same user
    ingest.ingest([{**anonymous, "event": "Order Completed", "messageId": "m3"}], now=clock())
    apply_until_idle(live)
    with db.transaction() as session:
        statuses = dict(session.execute(select(Run.journey_id, Run.status)).all())
    assert statuses == {"cart_abandon": "exited", "post_purchase_cross_sell": "active"}


def test_a_sender_that_breaks_its_contract_is_retried_then_falls_back(
    db: Database, clock: Clock
) -> None:
    class Broken:
        def send(self, message):  # type: ignore[no-untyped-def]
            raise RuntimeError("socket closed")

    deploy(db, SourceTree.from_directory(ROOT / "journeys"), now=clock())
    sms = RecordingSender()
    live = LiveEngine(db, SenderRegistry({"wecom": Broken(), "sms": sms}), clock=clock)
    Ingestor(db).ingest(
        [identify("u1", **LI, wecom_userid="w1"), track("u1", "Signed Up", "m1")], now=clock()
    )
    apply_until_idle(live)
    clock.now = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
    for _ in range(6):  # five tries with backoff, then it counts as undeliverable
        apply_until_idle(live)
        clock.advance(timedelta(minutes=10))
    tip = {m.channel: m for m in messages(db) if m.step == "wecom_tip"}
    assert tip["wecom"].status == "failed" and tip["wecom"].tries == 5
    assert "RuntimeError: socket closed" in (tip["wecom"].reason or "")
    assert tip["sms"].status == "sent"


def test_an_engine_error_on_a_message_is_dead_lettered_and_the_run_moves_on(
    db: Database, live: LiveEngine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.services.outbox as outbox_module

    def broken(*args: object, **kwargs: object) -> dict[str, str]:
        raise KeyError("a bug")

    Ingestor(db).ingest([identify("u1", **LI), track("u1", "Signed Up", "m1")], now=clock())
    live.apply()
    monkeypatch.setattr(outbox_module, "render_message", broken)
    live.dispatch()
    (welcome,) = messages(db)
    assert welcome.status == "failed" and "dead_letters" in (welcome.reason or "")
    with db.transaction() as session:
        (dead,) = session.scalars(select(DeadLetter)).all()
        assert dead.kind == "message" and dead.ref == welcome.message_id
        run = session.scalars(select(Run)).one()
        assert run.step == "wait_until_morning"  # moved on past the send


def test_links_in_one_batch_keep_the_first_owner(
    db: Database, live: LiveEngine, clock: Clock
) -> None:
    from engine.store.schema import Identity

    def link(user: str, message_id: str) -> dict[str, object]:
        return {
            "type": "identify",
            "userId": user,
            "anonymousId": "a1",
            "traits": {},
            "messageId": message_id,
        }

    anonymous = {
        "type": "track",
        "anonymousId": "a1",
        "event": "Product Added",
        "properties": {},
        "messageId": "m0",
    }
    Ingestor(db).ingest(
        [anonymous, link("u1", "m1"), link("u1", "m2"), link("u2", "m3")], now=clock()
    )
    apply_until_idle(live)
    with db.transaction() as session:
        assert session.scalar(select(StoredEvent.status).distinct()) == "processed"
        assert session.get(Identity, "anon:a1").owner_key == "user:u1"  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
        assert session.scalars(select(Run.user_key)).one() == "user:u1"


TWIN = """
id: {id}
name: {id}
trigger: {{event: Go}}
start: say
steps:
  say:
    send: {{channel: sms, content: {{text: "{id}"}}}}
    next: end
"""


def test_a_frequency_cap_holds_between_sends_of_one_batch(
    db: Database, clock: Clock, tmp_path: Path
) -> None:
    (tmp_path / "journeys").mkdir()
    for name in ("first", "second"):
        (tmp_path / "journeys" / f"{name}.yaml").write_text(TWIN.format(id=name))
    (tmp_path / "journeys" / "policies.yaml").write_text(
        "frequency_caps:\n  - {channel: sms, limit: 1, per: 1d}\n"
    )
    deploy(db, SourceTree.from_directory(tmp_path / "journeys"), now=clock())
    live = LiveEngine(db, clock=clock)
    Ingestor(db).ingest([identify("u1", phone="+1"), track("u1", "Go", "m1")], now=clock())
    apply_until_idle(live)  # one event starts both journeys in the same batch
    outcome = sorted((m.journey_id, m.status, m.reason) for m in messages(db))
    assert outcome == [("first", "sent", None), ("second", "suppressed", "frequency_cap")]


def test_a_restarted_engine_compiles_an_old_version_its_runs_are_pinned_to(
    db: Database, clock: Clock, tmp_path: Path
) -> None:
    """A new engine (nothing compiled yet) meets a run of the version before the current
    one in the middle of a round: it compiles that version inside the round (on SQLite,
    on the process's one connection, without waiting for a second one)."""
    deploy(db, write_journey(tmp_path, NUDGE.format(text="version one")), now=clock())
    Ingestor(db).ingest([identify("old", phone="+1"), track("old", "Started", "m1")], now=clock())
    apply_until_idle(LiveEngine(db, clock=clock))
    deploy(db, write_journey(tmp_path, NUDGE.format(text="version two")), now=clock())
    clock.advance(timedelta(hours=1))
    started = time.monotonic()
    apply_until_idle(LiveEngine(db, clock=clock))  # as after a restart
    assert time.monotonic() - started < 10
    (message,) = messages(db)
    assert message.status == "sent" and (message.content or {}).get("text") == "version one"
