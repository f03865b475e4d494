"""Schema migrations (being replaced by Alembic revisions)."""

from __future__ import annotations

from sqlalchemy import Engine

from engine.store.schema import Base


def upgrade(engine: Engine) -> None:
    """Bring the schema up to date."""
    Base.metadata.create_all(engine)
