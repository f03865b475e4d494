"""The shared processor over one open transaction: users and effects as rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from engine.metrics import count_outcomes
from engine.processor import Processor
from engine.store.database import after_commit
from engine.store.deployments import DeployedCatalog
from engine.store.users import SqlEffects, SqlUserBook, cap_horizon


def open_processor(
    session: Session, catalog: DeployedCatalog, now: datetime
) -> tuple[Processor, SqlUserBook, SqlEffects]:
    """A processor whose users and effects live in ``session`` (the catalog is refreshed)."""
    horizon = cap_horizon(catalog.current.policies.caps)
    # The book and effects keep the rows they touch and write them at flush; flushing
    # before every lookup would only repeat that work.
    session.autoflush = False
    book = SqlUserBook(session, now, horizon)
    effects = SqlEffects(session, catalog, now, book)
    after_commit(session, lambda: count_outcomes(effects.outcomes))
    return Processor(catalog, book, effects), book, effects
