"""What the rest of the engine may rely on from the store, proven on SQLite and PostgreSQL.

Every test runs once per backend (``database_url`` is parametrized) on a fresh database.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from engine.store.database import Database, create_db_engine
from engine.store.migrate import current_revision, head_revision, upgrade
from engine.store.schema import Base, Profile, StoredEvent, Timer

T0 = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
CST = timezone(timedelta(hours=8))  # China Standard Time, +08:00


def event_row(message_id: str, **fields: Any) -> StoredEvent:
    values: dict[str, Any] = {
        "message_id": message_id,
        "type": "track",
        "user_id": "u1",
        "user_key": "user:u1",
        "partition": 7,
        "timestamp": T0,
        "received_at": T0,
        "payload": {"messageId": message_id},
        **fields,
    }
    return StoredEvent(**values)


def profile(user_key: str, at: datetime, traits: dict[str, Any] | None = None) -> Profile:
    return Profile(user_key=user_key, traits=traits or {}, created_at=at, updated_at=at)


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


# --- migrations ----------------------------------------------------------------------------


def test_migrations_apply_from_empty_and_a_second_upgrade_is_a_no_op(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert table_names(engine) == set()
        assert current_revision(engine) is None

        upgrade(engine)
        assert table_names(engine) == set(Base.metadata.tables) | {"alembic_version"}
        assert current_revision(engine) == head_revision() == "0010"

        with engine.begin() as connection:
            connection.execute(
                insert(Profile).values(user_key="user:1", traits={}, created_at=T0, updated_at=T0)
            )
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement.strip().split()[0].upper())

        event.listen(engine, "before_cursor_execute", record)
        upgrade(engine)
        event.remove(engine, "before_cursor_execute", record)

        writes = {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}
        assert not writes & set(statements), statements
        assert current_revision(engine) == "0010"
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
            assert connection.execute(text("SELECT count(*) FROM profiles")).scalar() == 1
    finally:
        engine.dispose()


def test_two_concurrent_opens_both_migrate(database_url: str) -> None:
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    opened: list[Database] = []

    def open_database() -> None:
        try:
            barrier.wait(timeout=30)
            opened.append(Database(database_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_database, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not errors, errors
        assert len(opened) == 2
        for database in opened:
            assert current_revision(database.engine) == head_revision()
        with opened[0].engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        with opened[0].transaction() as session:  # and the schema is usable from both
            session.add(profile("user:a", T0))
        with opened[1].transaction() as session:
            assert session.get(Profile, "user:a") is not None
    finally:
        for database in opened:
            database.dispose()


# --- UtcDateTime -----------------------------------------------------------------------------


def test_aware_utc_datetimes_round_trip_exactly(db: Database) -> None:
    with db.transaction() as session:
        session.add(profile("user:1", T0))
    with db.transaction() as session:
        row = session.get(Profile, "user:1")
        assert row is not None
        assert row.created_at == T0
        assert row.created_at.tzinfo is UTC
        assert row.created_at.microsecond == 123456


def test_other_offsets_are_stored_and_returned_as_utc(db: Database) -> None:
    shanghai = datetime(2026, 3, 1, 18, 30, tzinfo=CST)  # 10:30 UTC
    with db.transaction() as session:
        session.add(profile("user:cst", shanghai))
    with db.transaction() as session:
        row = session.get(Profile, "user:cst")
        assert row is not None
        assert row.created_at.tzinfo is UTC
        assert row.created_at == shanghai
        assert (row.created_at.hour, row.created_at.minute) == (10, 30)
        # Comparisons in SQL use the same conversion, whatever offset the bound value has.
        found = session.scalars(
            select(Profile.user_key).where(
                Profile.created_at > datetime(2026, 3, 1, 18, 29, tzinfo=CST),
                Profile.created_at < datetime(2026, 3, 1, 10, 31, tzinfo=UTC),
            )
        ).all()
        assert found == ["user:cst"]


def test_datetimes_come_back_in_utc_whatever_the_session_time_zone(db: Database) -> None:
    with db.transaction() as session:
        session.add(profile("user:1", T0))
    with db.transaction() as session:
        if not db.is_sqlite:
            session.execute(text("SET LOCAL TIME ZONE 'Asia/Shanghai'"))
        row = session.scalars(select(Profile).where(Profile.created_at == T0)).one()
        assert row.created_at == T0
        assert row.created_at.tzinfo is UTC


def test_naive_datetimes_are_refused(db: Database) -> None:
    naive = datetime(2026, 3, 1, 10, 0)
    refused = pytest.raises(StatementError, match="naive datetimes are not stored")
    with refused as caught, db.transaction() as session:
        session.add(profile("user:naive", naive))
    assert isinstance(caught.value.orig, ValueError)
    with pytest.raises(StatementError, match="naive"), db.transaction() as session:
        session.execute(select(Profile).where(Profile.created_at < naive))
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Profile)) == 0


# --- events ------------------------------------------------------------------------------------


def test_event_message_ids_are_unique(db: Database) -> None:
    with db.transaction() as session:
        session.add(event_row("m-1"))
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.add(event_row("m-1", type="identify"))
    with db.transaction() as session:
        events = session.scalars(select(StoredEvent)).all()
        assert [(e.message_id, e.type) for e in events] == [("m-1", "track")]


def test_event_seq_increases_in_insert_order(db: Database) -> None:
    names = [f"m-{n:03d}" for n in (7, 3, 99, 1, 50, 2, 42, 0, 13, 8)]
    with db.transaction() as session:  # one by one, each its own statement
        for name in names[:3]:
            session.add(event_row(name))
            session.flush()
    with db.transaction() as session:  # a batch in one flush
        session.add_all([event_row(name) for name in names[3:8]])
    for name in names[8:]:  # one per transaction
        with db.transaction() as session:
            session.add(event_row(name))
    with db.transaction() as session:
        rows = session.execute(select(StoredEvent.seq, StoredEvent.message_id)).all()
    by_seq = sorted(rows)
    assert [message_id for _, message_id in by_seq] == names
    seqs = [seq for seq, _ in by_seq]
    assert len(set(seqs)) == len(seqs) and all(isinstance(seq, int) for seq in seqs)


def test_new_events_default_to_pending(db: Database) -> None:
    with db.transaction() as session:
        session.add(event_row("m-1"))
    with db.transaction() as session:
        assert session.scalars(select(StoredEvent.status)).one() == "pending"


# --- JSON ----------------------------------------------------------------------------------


def test_json_columns_round_trip_nested_non_ascii_data(db: Database) -> None:
    payload: dict[str, Any] = {
        "type": "track",
        "event": "下单成功",
        "properties": {
            "商品": [{"名称": "珍珠奶茶", "甜度": "半糖", "价格": 18.5}, {"名称": "抹茶拿铁"}],
            "城市": "上海",
            "优惠": None,
            "首单": True,
            "数量": 2,
            "备注": '引号"、反斜杠\\、换行\n和 emoji 🧋',
        },
        "context": {"locale": "zh-CN", "nested": {"a": {"b": {"c": ["深", "层"]}}}},
    }
    traits = {"姓名": "张三", "标签": ["会员", "新客"], "地址": {"省": "广东", "市": "深圳"}}
    with db.transaction() as session:
        session.add(event_row("m-中文", payload=payload))
        session.add(profile("user:张三", T0, traits))
    with db.transaction() as session:
        assert session.scalars(select(StoredEvent.payload)).one() == payload
        stored = session.get(Profile, "user:张三")
        assert stored is not None and stored.traits == traits
        assert session.scalars(select(StoredEvent.message_id)).one() == "m-中文"


# --- timers --------------------------------------------------------------------------------


def test_timers_order_by_due_time_then_seq(db: Database) -> None:
    later = T0 + timedelta(hours=1)
    timers = [  # (timer_id, seq, due_at), inserted in this (unsorted) order
        ("t-late", 1, later),
        ("t-b", 5, T0),
        ("t-a", 9, T0),
        ("t-c", 2, T0),
        ("t-cst", 3, (T0 - timedelta(microseconds=1)).astimezone(CST)),  # earliest, as +08:00
        ("t-micro", 4, T0 + timedelta(microseconds=1)),
    ]
    with db.transaction() as session:
        for timer_id, seq, due_at in timers:
            session.add(
                Timer(
                    timer_id=timer_id,
                    seq=seq,
                    run_id="r1",
                    user_key="user:1",
                    partition=1,
                    due_at=due_at,
                )
            )
    with db.transaction() as session:
        ordered = session.scalars(select(Timer.timer_id).order_by(Timer.due_at, Timer.seq)).all()
        assert ordered == ["t-cst", "t-c", "t-b", "t-a", "t-micro", "t-late"]
        due = session.scalars(
            select(Timer.timer_id).where(Timer.due_at <= T0).order_by(Timer.due_at, Timer.seq)
        ).all()
        assert due == ["t-cst", "t-c", "t-b", "t-a"]


def test_timer_seq_numbers_increase_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from engine.store.users import next_seq

    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: [next_seq() for _ in range(500)], range(4)))
    numbers = [n for batch in batches for n in batch]
    assert len(set(numbers)) == len(numbers)
    assert all(batch == sorted(batch) for batch in batches)
