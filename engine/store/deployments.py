"""Deploying journey directories, and the catalog of deployed versions.

``deploy`` compiles a directory and stores it as a new deployment atomically:
all of it, or nothing. Deploys are serialised in the database (an advisory lock on
PostgreSQL, the single writer on SQLite), so any number may run at once, from any number
of processes: the same files deployed twice store one deployment. Runs keep the journey
version they entered with; :class:`DeployedCatalog` compiles any stored version on
demand and notices a newer deployment on its next ``refresh`` (no restart needed).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from engine.errors import EngineError
from engine.graph import CompiledJourney
from engine.project import Project, SourceTree, compile_sources
from engine.store.audit import os_actor, record_audit
from engine.store.database import Database
from engine.store.schema import Deployment, JourneyState, JourneyVersion

log = logging.getLogger("journey.deploy")
# Key of the PostgreSQL advisory lock held while deploying (any constant bigint will do).
DEPLOY_LOCK_KEY = 0x6A6F75726E6570  # "journep"


@dataclass(frozen=True)
class DeployResult:
    deployment_id: int
    version: str
    journeys: tuple[tuple[str, str], ...]  # (journey id, version)
    unchanged: bool


def deploy(
    db: Database, tree: SourceTree, now: datetime | None = None, *, actor: str | None = None
) -> DeployResult:
    """Compile ``tree`` and store it as the current deployment (CompileError if it fails),
    recorded in the audit log as done by ``actor`` (default: the operating-system user).

    Deploying the same files again changes nothing, and records nothing.
    """
    project = compile_sources(tree)
    now = now or datetime.now(UTC)
    journeys = tuple(sorted((j.id, j.version) for j in project.journeys.values()))
    with db.transaction() as session:
        if not db.is_sqlite:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DEPLOY_LOCK_KEY})
        latest = session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(1)).first()
        if latest is not None and latest.version == project.version:
            return DeployResult(latest.id, latest.version, journeys, unchanged=True)
        deployment = Deployment(
            version=project.version,
            files=tree.snapshot(),
            journeys={journey_id: version for journey_id, version in journeys},
            created_at=now,
        )
        session.add(deployment)
        session.flush()
        for journey in project.journeys.values():
            if session.get(JourneyVersion, (journey.id, journey.version)) is None:
                session.add(
                    JourneyVersion(
                        journey_id=journey.id,
                        version=journey.version,
                        deployment_id=deployment.id,
                        name=journey.name,
                        created_at=now,
                    )
                )
        record_audit(
            session,
            "deploy",
            f"deployment:{deployment.id}",
            actor or os_actor(),
            {"version": project.version, "journeys": dict(journeys)},
            at=now,
        )
    log.info("deployed version %s as deployment %s", project.version, deployment.id)
    return DeployResult(deployment.id, project.version, journeys, unchanged=False)


class DeployedCatalog:
    """The processor's Catalog over the deployments table (thread-safe).

    ``refresh`` reads the newest deployment, and the journeys paused or stopped, in the
    caller's transaction. A version that is
    not compiled yet is read in the transaction the calling thread last refreshed in while
    it is still open (on SQLite a process has one connection: a second transaction would
    wait for the first), else in a short session of the catalog's own.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._local = threading.local()
        self._lock = threading.Lock()
        self._projects: dict[int, Project] = {}
        self._current_id: int | None = None
        self._versions: dict[tuple[str, str], CompiledJourney] = {}
        self.halted: frozenset[str] = frozenset()

    def refresh(self, session: Session) -> bool:
        """Load the newest deployment if it changed; True when it did."""
        self._local.session = session
        self.halted = frozenset(session.scalars(select(JourneyState.journey_id)))
        latest = session.scalar(select(func.max(Deployment.id)))
        if latest is None:
            raise EngineError("nothing is deployed: run `journey deploy DIR` first")
        with self._lock:
            if latest == self._current_id:
                return False
            project = self._project(session, latest)
            self._current_id = latest
            for journey in project.journeys.values():
                self._versions[(journey.id, journey.version)] = journey
        log.info("now running deployment %s (version %s)", latest, project.version)
        return True

    @property
    def current(self) -> Project:
        if self._current_id is None:
            raise EngineError("the catalog was not refreshed")
        return self._projects[self._current_id]

    def journey(self, journey_id: str, version: str) -> CompiledJourney:
        """The journey version a run is pinned to, compiled from its deployment if needed."""
        found = self._versions.get((journey_id, version))
        if found is not None:
            return found
        current: Session | None = getattr(self._local, "session", None)
        if current is not None and current.in_transaction():
            with self._lock:
                return self._compile(current, journey_id, version)
        with self._lock, self.db.sessions() as session:
            return self._compile(session, journey_id, version)

    def _compile(self, session: Session, journey_id: str, version: str) -> CompiledJourney:
        found = self._versions.get((journey_id, version))
        if found is not None:
            return found
        row = session.get(JourneyVersion, (journey_id, version))
        if row is None:
            raise EngineError(f"journey {journey_id!r} version {version!r} was never deployed")
        project = self._project(session, row.deployment_id)
        journey = project.journeys.get(journey_id)
        if journey is None or journey.version != version:
            raise EngineError(f"deployment {row.deployment_id} lost {journey_id!r} {version!r}")
        self._versions[(journey_id, version)] = journey
        return journey

    def _project(self, session: Session, deployment_id: int) -> Project:
        if deployment_id not in self._projects:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None:
                raise EngineError(f"deployment {deployment_id} is missing")
            self._projects[deployment_id] = compile_sources(
                SourceTree.from_snapshot(deployment.files)
            )
        return self._projects[deployment_id]
