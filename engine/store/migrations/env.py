"""The Alembic environment, run by ``engine.store.migrate`` (there is no alembic.ini).

The caller passes an open SQLAlchemy Connection in ``config.attributes["connection"]``,
already inside a transaction that holds the migration lock; everything runs in it.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from engine.store.schema import Base, UtcDateTime

target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write the schema's custom column type as a plain SQLAlchemy type in new revisions."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if context.is_offline_mode() or not isinstance(connection, Connection):
        raise RuntimeError(
            "run migrations through engine.store.migrate (upgrade(engine) or "
            "`python -m engine.store.migrate`), which passes an open connection"
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can't ALTER much
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
