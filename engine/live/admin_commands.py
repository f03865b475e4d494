"""``journey stats``, ``journey dlq`` and ``journey audit``: reading and tending the live
database from a terminal (imported lazily, like the other live commands).

Actions are recorded in the audit log under the operating-system user running them.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import orjson
from rich.console import Console
from rich.table import Table

from engine.analytics.deployed import UnknownJourney, deployed_reports, journey_report
from engine.analytics.tables import print_report, summary_table
from engine.progress import progress_bar
from engine.settings import Settings
from engine.store.audit import audit_entries, entry_json, os_actor
from engine.store.database import Database
from engine.store.dead_letters import (
    NoSuchDeadLetter,
    Replay,
    dead_letter_json,
    dead_letters,
    discard,
    replay,
    waiting_ids,
)
from engine.store.deployments import DeployedCatalog


def _database() -> Database:
    return Database(Settings().database_url)


def _console() -> Console:
    # Piped output keeps whole lines: tables are not cut to an 80-column default.
    return Console(width=None if sys.stdout.isatty() else 160)


def _json(document: object) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def stats(journey_id: str | None, version: str | None, as_json: bool, recount: bool = False) -> int:
    """Every deployed journey's summary and report, or one journey's report."""
    db = _database()
    now = datetime.now(UTC)
    try:
        with db.transaction() as session:
            catalog = DeployedCatalog(db)
            if journey_id is None:
                reports = deployed_reports(session, catalog, now, recount)
            else:
                reports = [journey_report(session, catalog, journey_id, now, version, recount)]
    except UnknownJourney as exc:
        print(f"journey stats: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    if as_json:
        _json(
            [report.as_json() for report in reports] if journey_id is None else reports[0].as_json()
        )
        return 0
    console = _console()
    if not reports:
        console.print("nothing is deployed yet")
        return 0
    if journey_id is None:
        console.print(summary_table(reports))
    for report in reports:
        print_report(report, console)
    return 0


def dlq_list(include_replayed: bool, kind: str | None, limit: int, as_json: bool) -> int:
    db = _database()
    try:
        with db.transaction() as session:
            found = [
                dead_letter_json(letter)
                for letter in dead_letters(
                    session, include_replayed=include_replayed, kind=kind, limit=limit
                )
            ]
    finally:
        db.dispose()
    if as_json:
        _json(found)
        return 0
    table = Table(title=f"{len(found)} dead letter(s)", title_justify="left")
    for column in ("id", "kind", "ref", "set aside", "replayed", "error"):
        table.add_column(column)
    for letter in found:
        table.add_row(
            str(letter["id"]),
            letter["kind"],
            letter["ref"],
            letter["created_at"],
            letter["replayed_at"] or "",
            letter["error"],
        )
    _console().print(table)
    return 0


def dlq_replay(letter_id: int | None, everything: bool) -> int:
    """Replay one dead letter, or every one not replayed yet (a transaction each)."""
    if (letter_id is None) == (not everything):
        print("journey dlq replay: give a dead letter's ID, or --all", file=sys.stderr)
        return 2
    db = _database()
    actor = os_actor()
    results: list[Replay] = []
    try:
        if letter_id is not None:
            ids = [letter_id]
        else:
            with db.transaction() as session:
                ids = waiting_ids(session)
        with progress_bar("replaying", len(ids)) as advance:
            for one in ids:
                try:
                    with db.transaction() as session:
                        results.append(replay(session, one, actor, datetime.now(UTC)))
                except NoSuchDeadLetter as exc:
                    if letter_id is not None:
                        print(f"journey dlq replay: {exc}", file=sys.stderr)
                        return 1
                advance(1)
    finally:
        db.dispose()
    for result in results:
        print(
            f"{result.id} {result.kind} {'replayed' if result.replayed else 'left'}: {result.note}"
        )
    done = sum(result.replayed for result in results)
    if everything:
        print(f"replayed {done} of {len(results)} dead letter(s)")
    return 0 if done == len(results) else 1


def dlq_discard(letter_id: int) -> int:
    db = _database()
    try:
        with db.transaction() as session:
            gone = discard(session, letter_id, os_actor(), datetime.now(UTC))
    except NoSuchDeadLetter as exc:
        print(f"journey dlq discard: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(f"discarded dead letter {gone['id']} ({gone['kind']} {gone['ref']})")
    return 0


def audit(limit: int, action: str | None, as_json: bool) -> int:
    db = _database()
    try:
        with db.transaction() as session:
            entries = [entry_json(e) for e in audit_entries(session, limit=limit, action=action)]
    finally:
        db.dispose()
    if as_json:
        _json(entries)
        return 0
    table = Table(title="Audit log (newest first)", title_justify="left")
    for column in ("at", "who", "action", "target", "detail"):
        table.add_column(column)
    for entry in entries:
        detail = orjson.dumps(entry["detail"]).decode() if entry["detail"] else ""
        table.add_row(entry["at"], entry["actor"], entry["action"], entry["target"], detail)
    _console().print(table)
    return 0
