"""The ``journey`` command: validate, simulate and describe journeys."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import orjson
import typer

from engine.channels.plugins import load_plugins
from engine.durations import iso_z as iso
from engine.errors import CompileError, EngineError
from engine.event_feed import EventFeed
from engine.event_files import EventFile
from engine.events import Event
from engine.forked import WorkerFailed, can_fork, usable_cores
from engine.progress import Advance, count_lines, progress_bar, shows_progress
from engine.project import Project, compile_project
from engine.simulate import Simulation, Summary, collected_by_hand
from engine.simulation_workers import WorkerSimulation
from engine.spec import Journey, Policies

if TYPE_CHECKING:  # the reports are imported when asked for (``--stats``): a faster start
    from engine.analytics.tally import SimulationStats

DEFAULT_HORIZON = timedelta(days=30)

app = typer.Typer(
    name="journey",
    help="Marketing journeys as code: validate, simulate and run YAML journeys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


JourneysDir = Annotated[Path, typer.Argument(help="directory of journey YAML files")]
TemplatesOption = Annotated[
    Path | None, typer.Option(help="templates directory (default: templates/ beside the journeys)")
]


def _compile(journeys_dir: Path, templates: Path | None, report: TextIO) -> Project | None:
    try:
        return compile_project(journeys_dir, templates)
    except CompileError as exc:
        exc.report(report)
        return None


@app.command()
def validate(
    journeys_dir: JourneysDir,
    templates: TemplatesOption = None,
) -> int:
    """Compile every journey in a directory and report every error as file:line:column."""
    project = _compile(journeys_dir, templates, sys.stdout)
    if project is None:
        return 1
    ids = ", ".join(sorted(project.journeys)) or "none"
    print(f"OK: {len(project.journeys)} journey(s) compile: {ids}")
    return 0


@app.command()
def schema(
    policies: Annotated[
        bool, typer.Option("--policies", help="the policies.yaml schema instead")
    ] = False,
) -> int:
    """Print the JSON Schema of journey files (or of policies.yaml), for editors."""
    model = Policies if policies else Journey
    document: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    document.update(model.model_json_schema())
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _parse_until(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO-8601 time like 2026-03-31T00:00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@app.command()
def simulate(
    journeys_dir: JourneysDir,
    events_file: Annotated[Path, typer.Argument(help="Segment messages, one JSON object per line")],
    until: Annotated[
        str | None, typer.Option(help="fire timers up to this time (default: last event + 30 days)")
    ] = None,
    templates: TemplatesOption = None,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats", help="also print each journey's report (funnel, conversions...) on stderr"
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="processes to split users among (default: JOURNEY_SIMULATE_WORKERS, "
            "else one per core for a file of 4 MiB or more); the trace is the same",
        ),
    ] = None,
) -> int:
    """Run the journeys over an event stream on a virtual clock; print what would be sent."""
    horizon = _parse_until(until) if until else None
    readable = events_file.is_file()
    count = _worker_count(workers, events_file, stats) if readable else 1
    if count is None:
        return 1
    stream = EventFile(events_file)
    # Split among workers, the file is first read while the journeys compile.
    split = WorkerSimulation(stream, count) if count > 1 else None
    project = _compile(journeys_dir, templates, sys.stderr)
    if project is None:
        if split is not None:
            split.cancel()
        return 1
    if not readable:
        print(f"{events_file}: cannot read events: no such file", file=sys.stderr)
        return 1
    out = sys.stdout
    binary = getattr(out, "buffer", None)  # the lines are UTF-8 JSON already

    def write(lines: bytes) -> None:
        if binary is not None:
            out.flush()
            binary.write(lines)
        else:
            out.write(lines.decode())

    watcher = None
    if stats:
        from engine.analytics.tally import SimulationStats

        watcher = SimulationStats(project)
    simulation: Simulation | None = None
    if split is not None:
        split.start(project, lambda last: _horizon(horizon, last))
    try:
        total = count_lines(str(events_file)) if shows_progress() else None
        with progress_bar("simulating", total) as advance:
            if split is not None:
                outcome = split.merge(write, advance)
                summary, users = outcome.summary, outcome.users
            else:
                simulation = _simulate_here(project, stream, watcher, horizon, write, advance)
                summary, users = simulation.summary, len(simulation.users)
    except OSError as exc:
        print(f"{events_file}: cannot read events: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except WorkerFailed as exc:
        print(f"journey simulate: {exc}; the trace above is incomplete", file=sys.stderr)
        return 1
    horizon = _horizon(horizon, stream.last)
    out.flush()
    for error in stream.errors:
        print(error, file=sys.stderr)
    _summarise(summary, users, project, stream, horizon)
    if watcher is not None and simulation is not None:
        _print_stats(project, simulation, watcher, horizon or stream.last)
    return 1 if stream.errors else 0


#: Files smaller than this are simulated in one process unless told otherwise.
WORKERS_FROM_BYTES = 4 << 20


def _worker_count(asked: int | None, events_file: Path, stats: bool) -> int | None:
    """How many processes simulate; None (reported) when the setting is invalid."""
    if stats or not can_fork():
        return 1  # --stats watches every user in one place
    if asked is not None:
        return asked
    from pydantic import ValidationError

    from engine.settings import Settings

    try:
        setting = Settings().simulate_workers
    except ValidationError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return None
    if setting is not None:
        return setting
    if events_file.stat().st_size < WORKERS_FROM_BYTES:
        return 1
    return min(usable_cores(), 8)


def _horizon(until: datetime | None, last: datetime | None) -> datetime | None:
    """Up to when timers fire after the last event: ``--until``, else 30 days on."""
    if until is not None:
        return until
    return last + DEFAULT_HORIZON if last is not None else None


def _simulate_here(
    project: Project,
    stream: EventFile,
    watcher: SimulationStats | None,
    until: datetime | None,
    write: Callable[[bytes], None],
    advance: Advance,
) -> Simulation:
    """Simulate in this process (the file is read beside it); the trace goes to ``write``."""
    pending: list[bytes] = []

    def flush() -> None:
        if pending:
            pending.append(b"")
            write(b"\n".join(pending))
            pending.clear()

    def emit(line: dict[str, Any]) -> None:
        pending.append(orjson.dumps(line))
        if len(pending) >= 4096:
            flush()

    simulation = Simulation(project, emit, observer=watcher)
    # Read beside the simulation; the events that change nothing never reach it.
    feed = EventFeed(stream, simulation.processor.acts_on)
    simulation.run(_sparing_the_collector(feed, advance))
    horizon = _horizon(until, stream.last)
    if horizon is not None:
        simulation.fire_due(horizon)
    flush()
    return simulation


def _print_stats(
    project: Project, simulation: Simulation, watcher: SimulationStats, end: datetime | None
) -> None:
    """The report of every journey over the simulated stream, as ``journey stats`` prints it."""
    from rich.console import Console

    from engine.analytics.report import build_report
    from engine.analytics.shape import journey_shape
    from engine.analytics.tables import print_report, summary_table

    now = end or datetime.now(UTC)
    source = watcher.finish(simulation.users.values(), now)
    reports = [
        build_report(journey_shape(journey), source, now, version=journey.version)
        for _, journey in sorted(project.journeys.items())
    ]
    # Redirected, tables keep whole lines instead of an 80-column default.
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    console.print(summary_table(reports))
    for report in reports:
        print_report(report, console)


def _sparing_the_collector(feed: EventFeed, advance: Advance) -> Iterator[Event]:
    """``feed``'s events, the collector run by hand (:func:`collected_by_hand`); the bar
    advances by the events read."""
    shown = 0
    with collected_by_hand() as tick:
        for event in feed:
            if tick():
                advance(feed.read - shown)
                shown = feed.read
            yield event


def _summarise(
    summary: Summary, users: int, project: Project, stream: EventFile, horizon: datetime | None
) -> None:
    err = sys.stderr
    span = ""
    if stream.first is not None and stream.last is not None:
        end = max(stream.last, horizon) if horizon else stream.last
        span = f", {iso(stream.first)} .. {iso(end)}"
    print(
        f"simulated {stream.count} event(s) ({stream.duplicates} duplicate(s) ignored, "
        f"{len(stream.errors)} invalid line(s)) for {users} user(s){span}",
        file=err,
    )
    for journey_id in sorted(project.journeys):
        counts = summary.counts[journey_id]
        suppressed = {
            k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("suppressed:")
        }
        detail = ", ".join(f"{reason} {n}" for reason, n in sorted(suppressed.items()))
        print(
            f"  {journey_id}: entered {counts['entered']}, sent {counts['sent']}, "
            f"suppressed {sum(suppressed.values())}"
            + (f" ({detail})" if detail else "")
            + f", failed {counts['failed']}, converted {counts['converted']}, "
            f"exited {counts['exited']}, completed {counts['completed']}",
            file=err,
        )


@app.command()
def deploy(
    journeys_dir: JourneysDir,
    templates: TemplatesOption = None,
) -> int:
    """Compile a journey directory and make it the running version, all or nothing."""
    from engine.live.commands import deploy_directory

    return deploy_directory(journeys_dir, templates)


@app.command("run")
def run_command(
    journeys_dir: Annotated[
        Path, typer.Argument(help="directory of journey YAML files to deploy first")
    ] = Path("journeys"),
    host: Annotated[str | None, typer.Option(help="listen address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default 8000)")] = None,
    templates: TemplatesOption = None,
) -> int:
    """Deploy the journeys and run API, engine and dispatcher in one process."""
    from engine.live.commands import run_embedded

    return run_embedded(journeys_dir, templates, host, port)


JourneyId = Annotated[str, typer.Argument(help="the journey's id")]


@app.command("pause")
def pause_command(journey_id: JourneyId) -> int:
    """Pause a journey: it admits no one and holds its runs' messages until resumed."""
    from engine.live.commands import change_journey

    return change_journey(journey_id, "paused")


@app.command("resume")
def resume_command(journey_id: JourneyId) -> int:
    """Resume a paused or stopped journey: it admits people and sends what it held."""
    from engine.live.commands import change_journey

    return change_journey(journey_id, "active")


@app.command("stop")
def stop_command(journey_id: JourneyId) -> int:
    """Stop a journey: it admits no one and every run of it ends now."""
    from engine.live.commands import change_journey

    return change_journey(journey_id, "stopped")


@app.command("forget")
def forget_command(
    user_id: Annotated[str, typer.Argument(help="the userId (or anonymousId)")],
) -> int:
    """Erase a user's personal data everywhere (an erasure request); idempotent."""
    from engine.live.commands import forget_user

    return forget_user(user_id)


@app.command("export")
def export_command(
    user_id: Annotated[str, typer.Argument(help="the userId (or anonymousId)")],
) -> int:
    """Print everything held about a user as one JSON document (a data access request)."""
    from engine.live.commands import export_user

    return export_user(user_id)


@app.command("webhooks")
def webhooks_command() -> int:
    """Print the webhook URLs to configure at each provider (delivery reports, SMS replies)."""
    from engine.api.webhooks import webhook_urls
    from engine.live.commands import remember_credentials
    from engine.settings import Settings

    settings = Settings()
    remember_credentials(settings)  # the secret key `journey run` made up here, if it did
    for what, url in webhook_urls(settings).items():
        print(f"{what:36} {url}")
    if settings.secret_key is None:
        print("(set JOURNEY_SECRET_KEY for Aliyun's URLs and for signed reports)")
    return 0


@app.command("stats")
def stats_command(
    journey: Annotated[str | None, typer.Argument(help="a journey id (default: all)")] = None,
    version: Annotated[
        str | None, typer.Option(help="a version, or 'all' (default: the one deployed now)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    recount: Annotated[
        bool, typer.Option(help="count afresh from runs and messages, not the counters")
    ] = False,
) -> int:
    """Funnel, conversions, attribution and A/B arms of the live journeys."""
    from engine.live.admin_commands import stats

    return stats(journey, version, as_json, recount)


dlq = typer.Typer(help="Dead letters: work that failed for good.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")


@dlq.command("list")
def dlq_list_command(
    include_replayed: Annotated[bool, typer.Option("--all", help="with those replayed")] = False,
    kind: Annotated[str | None, typer.Option(help="event, timer or message")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> int:
    """List dead letters, newest first, with their error."""
    from engine.live.admin_commands import dlq_list

    return dlq_list(include_replayed, kind, limit, as_json)


@dlq.command("replay")
def dlq_replay_command(
    letter_id: Annotated[int | None, typer.Argument(help="the dead letter's id")] = None,
    everything: Annotated[bool, typer.Option("--all", help="every one not replayed")] = False,
) -> int:
    """Put dead-lettered work back for the engine (recorded in the audit log)."""
    from engine.live.admin_commands import dlq_replay

    return dlq_replay(letter_id, everything)


@dlq.command("discard")
def dlq_discard_command(
    letter_id: Annotated[int, typer.Argument(help="the dead letter's id")],
) -> int:
    """Delete a dead letter; its work stays failed (recorded in the audit log)."""
    from engine.live.admin_commands import dlq_discard

    return dlq_discard(letter_id)


@app.command("audit")
def audit_command(
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    action: Annotated[str | None, typer.Option(help="only this action (deploy, replay...)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> int:
    """Who deployed, replayed or discarded what, and when (newest first)."""
    from engine.live.admin_commands import audit

    return audit(limit, action, as_json)


@app.command("worker")
def worker_command(
    queues: Annotated[
        str,
        typer.Option(
            "--queues", "-Q", help="comma-separated queues: events, timers, sms... (default: all)"
        ),
    ] = "",
    concurrency: Annotated[int, typer.Option(help="worker processes")] = 2,
    loglevel: Annotated[str, typer.Option(help="log level")] = "info",
) -> int:
    """Run a Celery worker: applies events and timers, delivers messages (JOURNEY_BROKER_URL)."""
    from workers.commands import run_worker

    return run_worker([q.strip() for q in queues.split(",") if q.strip()], concurrency, loglevel)


@app.command("scheduler")
def scheduler_command() -> int:
    """Ring the workers for due timers, and for any work whose doorbell was lost."""
    from workers.commands import run_scheduler

    return run_scheduler()


@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="listen address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default 8000)")] = None,
    workers: Annotated[int, typer.Option(help="server processes")] = 2,
) -> int:
    """Serve the event and admin API; stored events ring the workers."""
    from workers.commands import run_api

    return run_api(host, port, workers)


@app.command("stack")
def stack_command(
    journeys_dir: Annotated[
        Path, typer.Argument(help="directory of journey YAML files to deploy first")
    ] = Path("journeys"),
    templates: TemplatesOption = None,
    api_workers: Annotated[int, typer.Option(help="API server processes")] = 2,
    workers: Annotated[int, typer.Option(help="Celery workers (2 processes each)")] = 2,
    flower: Annotated[bool, typer.Option(help="also run Flower on :5555")] = True,
) -> int:
    """Deploy, then run the API, Celery workers, the scheduler and Flower on this machine."""
    from workers.commands import run_stack

    return run_stack(journeys_dir, templates, api_workers, workers, flower)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting (the console script exits)."""
    try:
        load_plugins()  # channels from installed packages, before any journey is compiled
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        result = app(args=argv if argv is not None else sys.argv[1:], standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.TyperException as exc:  # usage errors: show the usage line and the problem
        show = getattr(exc, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:
            print(f"error: {exc.format_message()}", file=sys.stderr)
        return int(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
