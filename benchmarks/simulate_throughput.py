"""Throughput of `journey simulate` on two large event streams, against plain baselines.

    python3 scripts/dev.py bench                       # both streams, 1,000,000 events each
    python3 scripts/dev.py bench --quick               # 100,000 events each
    python3 scripts/dev.py bench --repeat 3            # best of three, and the spread
    python3 scripts/dev.py bench --compare ../old      # the same runs on another checkout
    python3 scripts/dev.py bench --stream sessions --profile   # the top of a cProfile

Streams (generated once, deterministic, cached under benchmarks/.cache/):

- ``sessions``: shopping sessions over the example journeys, about one trace line per
  three events, in time order (``session_stream.py``).
- ``send-heavy``: most events send a message at once on one of the four channels, under
  caps and quiet hours; about two trace lines per event; the file is in the order events
  were received, not in time order, so it must be sorted (``send_heavy_stream.py``).

Each simulation runs `journey simulate` as the console script does, in a fresh process
of its own, which reports its wall time and CPU time; the trace goes to a file. The
processes the simulation starts (the reader of the event file, the workers) count too:
their CPU time is added. Peak memory is that of all the simulation's processes together,
sampled every 250 ms as the sum of their proportional set sizes (pages shared since a fork
count once), or the process's own peak RSS where that is larger.
With ``--compare DIR`` the same runs are made with that checkout's code (its
``.venv`` when it has one), and the traces of both must be identical. The baselines read
the same file and parse every line with ``json.loads`` and ``orjson.loads``, keeping
nothing: the ratio says what simulating costs beyond decoding the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import send_heavy_stream
import session_stream

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"


@dataclass(frozen=True)
class StreamKind:
    name: str
    journeys: Path
    generate: Callable[[Path, int, int, int], None]
    version: int


STREAMS = {
    "sessions": StreamKind("sessions", session_stream.JOURNEYS, session_stream.write_stream, 2),
    "send-heavy": StreamKind(
        "send-heavy",
        send_heavy_stream.JOURNEYS,
        send_heavy_stream.write_stream,
        send_heavy_stream.GENERATOR_VERSION,
    ),
}


def stream_path(kind: StreamKind, events: int, users: int, seed: int) -> Path:
    prefix = "events" if kind.name == "sessions" else kind.name
    return CACHE / f"{prefix}-{events}-{users}-s{seed}-v{kind.version}.jsonl"


def ensure_stream(kind: StreamKind, events: int, users: int, seed: int) -> Path:
    """The cached stream; generated in a child process so its memory stays out of the runs."""
    path = stream_path(kind, events, users, seed)
    if not path.exists():
        print(f"generating {path.relative_to(ROOT)} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--generate-only",
                kind.name,
                "--events",
                str(events),
                "--users",
                str(users),
                "--seed",
                str(seed),
            ],
            check=True,
        )
        print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


def baseline(path: Path, loads: Callable[[bytes], Any]) -> float:
    """Seconds to read the file and parse every line, keeping nothing."""
    started = time.perf_counter()
    with path.open("rb") as f:
        for line in f:
            loads(line)
    return time.perf_counter() - started


# -- one simulation, in a process of its own ------------------------------------------


def child(journeys: str, events: str, trace: str) -> int:
    """Run `journey simulate` in this process as the console script does; print a JSON
    report. Runs with whichever checkout's `engine` this interpreter imports."""
    from engine.cli import main  # the console script's entry point (pyproject [project.scripts])

    errors = io.StringIO()
    with (
        open(trace, "w", encoding="utf-8") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(errors),
    ):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started, cpu = time.perf_counter(), time.process_time()
        try:
            code = main(["simulate", journeys, events])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        out.flush()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + after.ru_maxrss
    report = {
        "seconds": seconds,
        "cpu": cpu,
        "rss_mb": peak_kib / 1024,  # KiB on Linux
        "code": code,
        "stderr": errors.getvalue().splitlines()[-12:],
    }
    print(json.dumps(report))
    return 0


@dataclass
class Run:
    seconds: float
    cpu: float
    rss_mb: float
    code: int
    stderr: list[str]
    digest: str
    lines: int


class TreeMemory:
    """Samples, every 250 ms, the memory of a process and all its descendants together
    (their proportional set sizes, so pages shared since a fork count once), and keeps
    the peak. Linux only; elsewhere ``peak_mb`` stays 0."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(0.25):
            total = sum(_pss_kib(pid) for pid in _tree(self.pid))
            self.peak_mb = max(self.peak_mb, total / 1024)


def _tree(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            text = Path(f"/proc/{current}/task/{current}/children").read_text()
        except OSError:
            continue
        pending.extend(int(child) for child in text.split())
    return found


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def simulate(checkout: Path, kind: StreamKind, events: Path, trace: Path) -> Run:
    """One `journey simulate` run with ``checkout``'s code, in a fresh process."""
    venv_python = checkout / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    env = dict(os.environ, PYTHONPATH=str(checkout))
    process = subprocess.Popen(
        [python, __file__, "--child", str(kind.journeys), str(events), str(trace)],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watcher = TreeMemory(process.pid)
    stdout, stderr = process.communicate()
    watcher.stop()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args, stdout, stderr)
    report = json.loads(stdout.strip().splitlines()[-1])
    if watcher.peak_mb:  # every process of the simulation at once, not the largest alone
        report["rss_mb"] = max(report["rss_mb"], watcher.peak_mb)
    digest, lines = hashlib.sha256(), 0
    with trace.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    return Run(**report, digest=digest.hexdigest(), lines=lines)


def trace_kinds(trace: Path) -> Counter[str]:
    kinds: Counter[str] = Counter()
    with trace.open("rb") as f:
        for line in f:
            item = json.loads(line)
            kind = item.get("type", "?")
            if kind == "message":
                kind = f"message {item.get('status')}"
                if item.get("reason"):
                    kind += f"/{item['reason']}"
            kinds[kind] += 1
    return kinds


def profile_in_process(kind: StreamKind, events: Path) -> None:
    from engine.cli import main

    profiler = cProfile.Profile()
    with (
        open(os.devnull, "w") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        profiler.enable()
        main(["simulate", str(kind.journeys), str(events)])
        profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    print(text.getvalue())


# -- report ---------------------------------------------------------------------------


def best(runs: list[Run]) -> Run:
    return min(runs, key=lambda run: run.seconds)


def spread(runs: list[Run]) -> str:
    times = [run.seconds for run in runs]
    if len(times) < 2:
        return ""
    return f"{min(times):.2f}..{max(times):.2f} s, median {statistics.median(times):.2f}"


def bench_stream(kind: StreamKind, args: argparse.Namespace) -> None:
    path = ensure_stream(kind, args.events, args.users, args.seed)
    if args.profile:
        profile_in_process(kind, path)
        return
    json_s = baseline(path, json.loads)
    import orjson  # a project dependency; imported here so --generate-only needs nothing

    orjson_s = baseline(path, orjson.loads)
    checkouts = [("this checkout", ROOT)]
    if args.compare:
        checkouts.append((f"{args.compare}", args.compare.resolve()))
    runs: dict[str, list[Run]] = {label: [] for label, _ in checkouts}
    with tempfile.TemporaryDirectory(prefix="journey-bench-") as tmp:
        traces = {label: Path(tmp) / f"trace-{n}.jsonl" for n, (label, _) in enumerate(checkouts)}
        for _ in range(args.repeat):  # interleaved, so a busy moment hits both alike
            for label, checkout in checkouts:
                runs[label].append(simulate(checkout, kind, path, traces[label]))
        kinds = trace_kinds(traces["this checkout"])

    mine = best(runs["this checkout"])
    print(f"\n== {kind.name}: {path.name} ({path.stat().st_size / 1e6:,.0f} MB)")
    print("journey simulate exit code", mine.code, "; its stderr ends with:")
    print("".join(f"  | {line}\n" for line in mine.stderr), end="")
    print("trace lines by kind: " + ", ".join(f"{k} {v:,}" for k, v in kinds.most_common()))
    rows = [("", "seconds", "events/s", "CPU s", "peak RSS", "spread")]
    for label, _ in checkouts:
        run = best(runs[label])
        rows.append(
            (
                f"journey simulate ({label})",
                f"{run.seconds:,.2f}",
                f"{args.events / run.seconds:,.0f}",
                f"{run.cpu:,.2f}",
                f"{run.rss_mb:,.0f} MB",
                spread(runs[label]),
            )
        )
    rows.append(("baseline: json.loads of every line", f"{json_s:,.2f}", "", "", "", ""))
    rows.append(("baseline: orjson.loads of every line", f"{orjson_s:,.2f}", "", "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(
        f"events {args.events:,}, users {args.users:,}, trace lines {mine.lines:,}; ratios: "
        f"simulate/orjson {mine.seconds / orjson_s:,.1f}x, "
        f"simulate/json {mine.seconds / json_s:,.1f}x"
    )
    if args.compare:
        other = best(runs[str(args.compare)])
        same = {run.digest for run in runs["this checkout"] + runs[str(args.compare)]}
        print(
            f"speed-up over {args.compare}: {other.seconds / mine.seconds:,.2f}x (best runs); "
            f"traces identical: {'yes' if len(same) == 1 else 'NO'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", choices=[*STREAMS, "all"], default="all")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="100,000 events over 10,000 users")
    parser.add_argument("--repeat", type=int, default=1, help="runs per checkout (best is shown)")
    parser.add_argument("--compare", type=Path, help="another checkout to run the same streams")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    parser.add_argument("--generate-only", choices=list(STREAMS), help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    if args.quick:
        args.events, args.users = 100_000, 10_000
    if args.generate_only:
        kind = STREAMS[args.generate_only]
        kind.generate(
            stream_path(kind, args.events, args.users, args.seed),
            args.events,
            args.users,
            args.seed,
        )
        return 0
    kinds = list(STREAMS.values()) if args.stream == "all" else [STREAMS[args.stream]]
    for kind in kinds:
        bench_stream(kind, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
