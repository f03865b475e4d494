#!/usr/bin/env python3
"""The project's one entry point on a fresh machine (needs only Python 3.11+ and git).

    python3 scripts/dev.py run [ARGS...]          set up, then `journey run` (or `journey ARGS`)
    python3 scripts/dev.py simulate [ARGS...]     set up, then simulate the examples, readably
    python3 scripts/dev.py test [PYTEST_ARGS...]  set up, then ruff, mypy, lint-imports, pytest
    python3 scripts/dev.py bench [ARGS...]        set up, then the simulate throughput benchmarks

Set-up is a `.venv` beside pyproject.toml with the project installed in editable mode; it is
reinstalled only when pyproject.toml changes (its hash is kept in .venv/.installed-hash).
Commands run from the repository root, so paths in ARGS are relative to it.
Standard library only: this file runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
HASH_FILE = VENV / ".installed-hash"

# What `run` does without ARGS. Today a simulation of the example journeys, shown readably;
# once the engine has a server this becomes (["run"], False).
DEFAULT_RUN: list[str] = ["run", "journeys"]
# What `simulate` does: the example journeys over the example events, shown readably.
DEFAULT_SIMULATE: list[str] = ["simulate", "journeys", "examples/events.jsonl"]

TEST_STEPS: list[tuple[str, list[str]]] = [
    ("ruff", ["ruff", "check", "engine", "workers", "tests", "scripts", "benchmarks"]),
    ("mypy", ["mypy"]),  # strict, packages engine and workers: see [tool.mypy] in pyproject.toml
    # The import contracts of [tool.importlinter] in pyproject.toml: the core stays pure.
    ("imports", ["lint-imports", "--no-cache"]),
    ("pytest", ["pytest"]),
]

# The part of a message that says most about it, per channel.
MAIN_PART = {"sms": "text", "email": "subject", "wecom": "content", "push": "title"}


def header(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def venv_env() -> dict[str, str]:
    env = dict(os.environ, VIRTUAL_ENV=str(VENV), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONHOME", None)
    return env


def check(cmd: Sequence[str]) -> None:
    """Run a set-up command; stop with its exit code if it fails."""
    code = subprocess.run(cmd, cwd=ROOT, env=venv_env(), stdin=subprocess.DEVNULL).returncode
    if code != 0:
        print(f"dev.py: `{' '.join(cmd)}` failed with exit code {code}", file=sys.stderr)
        sys.exit(code)


def project_hash() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv() -> None:
    """Create .venv if needed and (re)install the project when pyproject.toml changed."""
    if not (BIN / "python").exists():
        header(f"creating {VENV.relative_to(ROOT)} with Python {sys.version.split()[0]}")
        check([sys.executable, "-m", "venv", str(VENV)])
    wanted = project_hash()
    if HASH_FILE.exists() and HASH_FILE.read_text().strip() == wanted:
        return
    header("installing the project and its dev tools (pip install -e '.[dev]')")
    check([str(BIN / "pip"), "install", "--quiet", "-e", ".[dev]"])
    HASH_FILE.write_text(wanted + "\n")


def exec_in_venv(args: Sequence[str]) -> None:
    """Replace this process with a venv command run from the repository root."""
    os.chdir(ROOT)
    os.execve(str(BIN / args[0]), list(args), venv_env())


def short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_trace(line: str) -> str:
    """One readable line for one trace event of `journey simulate` (JSON lines on stdout)."""
    try:
        event: Any = json.loads(line)
    except ValueError:
        return line.rstrip("\n")
    if not isinstance(event, dict):
        return line.rstrip("\n")
    at = str(event.get("at", "")).replace("T", " ")
    kind = str(event.get("type", "?"))
    journey, user = str(event.get("journey", "-")), str(event.get("user_id", "-"))
    if kind != "message":
        return f"{at:<21} {journey:<26} {user:<12} {'':<6} {kind}"
    channel = str(event.get("channel") or "-")
    status = str(event.get("status") or "?")
    if event.get("reason"):
        status += f"/{event['reason']}"
    content = event.get("content") or {}
    text = ""
    if isinstance(content, dict) and content:
        part = MAIN_PART.get(channel)
        text = str(content.get(part) if part in content else next(iter(content.values())))
    line = f"{at:<21} {journey:<26} {user:<12} {channel:<6} {status:<22} {short(text, 60)}"
    return line.rstrip()


def pretty(lines: Iterable[str], out: IO[str]) -> None:
    for line in lines:
        if line.strip():
            out.write(format_trace(line) + "\n")
            out.flush()


def run_pretty(args: Sequence[str]) -> int:
    """Run a venv command, show its JSON-lines stdout readably, then its stderr (the summary)."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as err:
        child = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            cwd=ROOT,
            env=venv_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert child.stdout is not None
        try:
            pretty(child.stdout, sys.stdout)
        except BrokenPipeError:  # e.g. `dev.py run | head`
            child.kill()
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit quiet
        code = child.wait()
        err.seek(0)
        sys.stderr.write(err.read())
    return code


def cmd_run(args: list[str]) -> int:
    """`journey run` on the example journeys (embedded: SQLite, no servers), or `journey ARGS`."""
    ensure_venv()
    exec_in_venv(["journey", *(args or DEFAULT_RUN)])
    return 0  # not reached


def cmd_simulate(args: list[str]) -> int:
    """The example journeys over the example events, one readable line per trace event."""
    ensure_venv()
    return run_pretty(["journey", *(args or DEFAULT_SIMULATE)])


#: The browser the dashboard's test drives (Debian's package; nothing is downloaded by
#: Playwright itself), and a font that draws Chinese in its screenshots.
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_PACKAGES = ["chromium", "fonts-wqy-microhei"]


def ensure_browser() -> None:
    """Install chromium with apt when it is missing and apt can (as root, as CI runs);
    otherwise say so: the browser test then skips, or fails under CI=true."""
    if CHROMIUM.exists():
        return
    apt = shutil.which("apt-get")
    if apt is None:
        print("dev.py: no /usr/bin/chromium and no apt-get; the browser test cannot run")
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    header(f"installing {' '.join(BROWSER_PACKAGES)} for the dashboard's browser test (apt)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["update", "-qq"], ["install", "-y", "-qq", "--no-install-recommends"]):
        extra = BROWSER_PACKAGES if cmd[0] == "install" else []
        code = subprocess.run(
            [*sudo, apt, *cmd, *extra], env=env, stdin=subprocess.DEVNULL
        ).returncode
        if code != 0:
            print(f"dev.py: apt-get {cmd[0]} failed ({code}); the browser test cannot run")
            return


def cmd_test(args: list[str]) -> int:
    ensure_venv()
    ensure_browser()
    for name, cmd in TEST_STEPS:
        full = [*cmd, *args] if name == "pytest" else cmd
        header(f"{name}: {' '.join(full)}")
        code = subprocess.run(
            [str(BIN / full[0]), *full[1:]], cwd=ROOT, env=venv_env(), stdin=subprocess.DEVNULL
        ).returncode
        if code != 0:
            print(f"\ndev.py test: {name} failed (exit code {code})", file=sys.stderr)
            return code
    return 0


def cmd_bench(args: list[str]) -> int:
    ensure_venv()
    exec_in_venv(["python", "benchmarks/simulate_throughput.py", *args])
    return 0  # not reached


COMMANDS = {"run": cmd_run, "simulate": cmd_simulate, "test": cmd_test, "bench": cmd_bench}


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before the venv exists
        print("dev.py needs Python 3.11 or newer", file=sys.stderr)
        return 2
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
