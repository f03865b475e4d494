"""Deploys from several processes at once, and the catalog of deployed versions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select

from engine.project import SourceTree
from engine.store.database import Database
from engine.store.deployments import DeployedCatalog, DeployResult, deploy
from engine.store.schema import Deployment, JourneyVersion

T = TypeVar("T")
JOURNEY = """
id: nudge
name: Nudge
trigger: {{event: Go}}
start: say
steps:
  say:
    send: {{channel: sms, content: {{text: "{text}"}}}}
    next: end
"""


def tree(root: Path, text: str) -> SourceTree:
    (root / "journeys").mkdir(parents=True, exist_ok=True)
    (root / "journeys" / "nudge.yaml").write_text(JOURNEY.format(text=text))
    return SourceTree.from_directory(root / "journeys")


def at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run ``calls`` in threads released together; their results, or raise the first error."""
    barrier = threading.Barrier(len(calls))
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(call: Callable[[], T]) -> None:
        try:
            barrier.wait(10)
            value = call()
            with lock:
                results.append(value)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_the_same_files_deployed_at_once_store_one_deployment(
    database_url: str, tmp_path: Path
) -> None:
    source = tree(tmp_path, "hello")
    dbs = [Database(database_url) for _ in range(3)]
    try:
        results: list[DeployResult] = at_once([lambda db=db: deploy(db, source) for db in dbs])
        assert sorted(r.unchanged for r in results) == [False, True, True]
        assert len({r.deployment_id for r in results}) == 1
        with dbs[0].sessions() as session:
            assert session.scalar(select(func.count()).select_from(Deployment)) == 1
    finally:
        for db in dbs:
            db.dispose()


def test_different_files_deployed_at_once_each_store_a_version(
    database_url: str, tmp_path: Path
) -> None:
    sources = [tree(tmp_path / str(i), f"version {i}") for i in range(3)]
    dbs = [Database(database_url) for _ in range(3)]
    try:
        results = at_once(
            [lambda db=db, s=s: deploy(db, s) for db, s in zip(dbs, sources, strict=True)]
        )
        assert not any(r.unchanged for r in results)
        with dbs[0].sessions() as session:
            assert session.scalar(select(func.count()).select_from(Deployment)) == 3
            assert session.scalar(select(func.count()).select_from(JourneyVersion)) == 3
    finally:
        for db in dbs:
            db.dispose()


def test_the_catalog_compiles_a_pinned_version_from_any_thread(
    db: Database, tmp_path: Path
) -> None:
    first = deploy(db, tree(tmp_path / "1", "one"))
    deploy(db, tree(tmp_path / "2", "two"))
    catalog = DeployedCatalog(db)
    with db.sessions() as session:
        catalog.refresh(session)  # the newest; the first version is compiled on demand
    (version,) = [v for j, v in first.journeys if j == "nudge"]
    found = at_once([lambda: catalog.journey("nudge", version) for _ in range(4)])
    assert {j.version for j in found} == {version}
    assert catalog.current.journeys["nudge"].version != version
