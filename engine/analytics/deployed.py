"""Reports of the deployed journeys, counted from the live database.

A journey is drawn and reported in the version deployed now, or in any version it had
(``version``), or over every version together (``ALL``: the current version's steps,
then the steps only older versions had). Journeys no longer deployed are still found by
their newest version.

Counts come from the counters the database maintains (``engine.analytics.counters``);
``recount=True`` counts them again from the runs and messages themselves (a full scan:
to check the counters, or on a database restored without them).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.analytics.counters import CounterStats
from engine.analytics.database import DatabaseStats
from engine.analytics.report import JourneyReport, build_report
from engine.analytics.shape import JourneyShape, journey_shape
from engine.analytics.source import StatsSource
from engine.errors import EngineError
from engine.graph import CompiledJourney
from engine.store.deployments import DeployedCatalog
from engine.store.schema import JourneyVersion

ALL = "all"


def stats_source(session: Session, recount: bool = False) -> StatsSource:
    """The counters, or (``recount``) a count made afresh from the tables."""
    return DatabaseStats(session) if recount else CounterStats(session)


class UnknownJourney(LookupError):
    """No such journey, or no such version of it, was ever deployed."""


def _newest_version(session: Session, journey_id: str) -> str | None:
    return session.scalar(
        select(JourneyVersion.version)
        .where(JourneyVersion.journey_id == journey_id)
        .order_by(JourneyVersion.created_at.desc(), JourneyVersion.deployment_id.desc())
        .limit(1)
    )


def compiled(
    session: Session, catalog: DeployedCatalog, journey_id: str, version: str | None = None
) -> CompiledJourney:
    """The journey in ``version``, else as deployed now, else its newest version."""
    try:
        catalog.refresh(session)
    except EngineError:
        raise UnknownJourney("nothing is deployed yet") from None
    if version is None or version == ALL:
        current = catalog.current.journeys.get(journey_id)
        if current is not None:
            return current
        version = _newest_version(session, journey_id)
        if version is None:
            raise UnknownJourney(f"no journey {journey_id!r} was ever deployed")
    try:
        return catalog.journey(journey_id, version)
    except EngineError:
        raise UnknownJourney(f"journey {journey_id!r} has no version {version!r}") from None


def shape_of(
    session: Session, catalog: DeployedCatalog, journey_id: str, version: str | None = None
) -> JourneyShape:
    return journey_shape(compiled(session, catalog, journey_id, version))


def journey_report(
    session: Session,
    catalog: DeployedCatalog,
    journey_id: str,
    now: datetime,
    version: str | None = None,
    recount: bool = False,
) -> JourneyReport:
    """The report of one journey: its current version, ``version``, or ``ALL``."""
    journey = compiled(session, catalog, journey_id, version)
    scope_version = None if version == ALL else journey.version
    source = stats_source(session, recount)
    return build_report(journey_shape(journey), source, now, version=scope_version)


def deployed_reports(
    session: Session, catalog: DeployedCatalog, now: datetime, recount: bool = False
) -> list[JourneyReport]:
    """The report of every journey deployed now, in its current version, by id."""
    try:
        catalog.refresh(session)
    except EngineError:
        return []
    source = stats_source(session, recount)
    return [
        build_report(journey_shape(journey), source, now, version=journey.version)
        for _, journey in sorted(catalog.current.journeys.items())
    ]
