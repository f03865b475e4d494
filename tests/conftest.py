"""Shared fixtures: a fresh database per test on SQLite and PostgreSQL, and a Redis database.

``database_url`` is parametrized ``[sqlite]`` / ``[postgresql]``: every test that uses it
(or ``db``, or ``make_database_url``) runs on both, each time against a brand-new, empty
database: a file in ``tmp_path`` for SQLite, ``CREATE DATABASE test_<random>`` on the
server for PostgreSQL (dropped ``WITH (FORCE)`` afterwards). ``redis_url`` hands out an
empty Redis database number of its own and flushes it afterwards.

Finding the servers happens once per session, and only if a test needs them:

1. ``JOURNEY_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``;
   its user must be allowed to CREATE DATABASE) / ``JOURNEY_TEST_REDIS_URL`` (default
   ``redis://127.0.0.1:6379``).
2. If nothing answers there, a throwaway server started from the installed binaries
   (``initdb``/``pg_ctl`` on PATH or in /usr/lib/postgresql/*/bin; ``redis-server``) in a
   temporary directory on a free port, stopped when the session ends.
   ``JOURNEY_TEST_THROWAWAY=0`` turns this off.
3. Otherwise the test is skipped, saying what to install; with ``CI=true`` it fails instead,
   so CI can never pass by silently skipping a backend.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from engine.store.database import Database
from tests.live.clock import T0, Clock

POSTGRES_ENV = "JOURNEY_TEST_POSTGRES_URL"
REDIS_ENV = "JOURNEY_TEST_REDIS_URL"
THROWAWAY_ENV = "JOURNEY_TEST_THROWAWAY"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"

INSTALL_POSTGRES = (
    "run `apt-get install -y postgresql` (the tests then start a throwaway cluster with its "
    f"initdb/pg_ctl), or set {POSTGRES_ENV}=postgresql+psycopg://USER@HOST:PORT/DB for a "
    "running server where USER may CREATE DATABASE"
)
INSTALL_REDIS = (
    "run `apt-get install -y redis-server` (the tests then start a throwaway redis-server), "
    f"or set {REDIS_ENV}=redis://HOST:PORT for a running server"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def throwaway_allowed() -> bool:
    return os.environ.get(THROWAWAY_ENV, "1").strip().lower() not in {"0", "false", "no"}


@dataclass
class Service:
    """A server the tests may use: where it is, or why there is none."""

    name: str
    url: str | None = None  # admin URL (PostgreSQL) / server URL (Redis)
    how: str = ""  # how it was found, for the summary
    problem: str = ""  # why it is missing and what to do
    stops: list[Callable[[], None]] = field(default_factory=list)

    def require(self) -> str:
        """The URL, or skip the test (fail it under CI=true) saying what to do."""
        if self.url is None:
            if in_ci():
                pytest.fail(f"{self.problem} (CI=true: failing, not skipping)", pytrace=False)
            pytest.skip(self.problem)
        return self.url

    def stop(self) -> None:
        while self.stops:
            with contextlib.suppress(Exception):
                self.stops.pop()()


SERVICES: dict[str, Service] = {}


def one_line(exc: BaseException) -> str:
    """The first line of an error, without SQLAlchemy's ``(psycopg.OperationalError)``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__
    line = re.sub(r"^\([\w.]+\) ", "", line)
    return line.removeprefix("connection failed: ")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(tail)


# --- PostgreSQL ------------------------------------------------------------------------


def postgres_problem(url: str) -> str | None:
    """None when ``url`` answers and its user may create databases, else why not."""
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            allowed = connection.execute(
                text("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user")
            ).scalar()
    except Exception as exc:
        return one_line(exc)
    finally:
        engine.dispose()
    return None if allowed else "its user may not CREATE DATABASE"


def postgres_bindir() -> Path | None:
    """A directory holding initdb and pg_ctl: PATH first, then the newest Debian cluster."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        candidates.append(Path(initdb).resolve().parent)
    found = glob.glob("/usr/lib/postgresql/*/bin")

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", Path(path).parent.name))

    candidates += [Path(path) for path in sorted(found, key=version, reverse=True)]
    for path in candidates:
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def start_throwaway_postgres(service: Service) -> str:
    """Start a private cluster; returns its admin URL or raises RuntimeError saying why."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin")
    uid: int | None = None
    gid: int | None = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use its own account
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and there is no `postgres` user") from None
        uid, gid = account.pw_uid, account.pw_gid
    base = Path(tempfile.mkdtemp(prefix="journey-pg-"))
    service.stops.append(lambda: shutil.rmtree(base, ignore_errors=True))
    sockets = base
    if len(str(base)) > 80:  # a unix socket path may not exceed 107 bytes
        sockets = Path(tempfile.mkdtemp(prefix="journey-pg-", dir="/tmp"))
        service.stops.append(lambda: shutil.rmtree(sockets, ignore_errors=True))
    if uid is not None and gid is not None:
        os.chown(base, uid, gid)
        os.chown(sockets, uid, gid)
    data, log, port = base / "data", base / "server.log", free_port()
    env = dict(os.environ, LC_ALL="C", LANG="C")

    def pg(*args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [str(bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            env=env,
            cwd=base,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            user=uid,
            group=gid,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
            raise RuntimeError(f"`{args[0]}` failed: {detail[0]} {log_tail(log)}".strip())

    pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-locale",
       "-E", "UTF8", "--no-sync")  # fmt: skip
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    pg("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30", "start")
    service.stops.append(
        lambda: pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop", timeout=30)
    )
    service.how = f"throwaway cluster ({bindir}) on 127.0.0.1:{port}, data in {base}"
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"


def find_postgres() -> Service:
    service = Service("postgresql")
    explicit = os.environ.get(POSTGRES_ENV)
    url = explicit or DEFAULT_POSTGRES_URL
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    candidates = [url]
    if not explicit:  # the default server may lack the `test` database
        candidates.append(make_url(url).set(database="postgres").render_as_string(False))
    problems = []
    for candidate in candidates:
        problem = postgres_problem(candidate)
        if problem is None:
            service.url, service.how = candidate, f"server at {candidate}"
            return service
        problems.append(problem)
    why = f"{url} ({POSTGRES_ENV}): {problems[0]}"
    if not throwaway_allowed():
        service.problem = (
            f"PostgreSQL unavailable: {why}; throwaway servers are turned off "
            f"({THROWAWAY_ENV}=0). To fix, {INSTALL_POSTGRES}."
        )
        return service
    try:
        admin = start_throwaway_postgres(service)
        problem = postgres_problem(admin)
        if problem is not None:
            raise RuntimeError(f"it started but does not answer: {problem}")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        service.stop()
        service.problem = (
            f"PostgreSQL unavailable: {why}; no throwaway server either: "
            f"{one_line(exc)}. To fix, {INSTALL_POSTGRES}."
        )
        return service
    service.url = admin
    return service


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[Service]:
    """The PostgreSQL server for this session (looked for once, on first use)."""
    service = SERVICES["postgresql"] = find_postgres()
    atexit.register(service.stop)  # also when the session dies before teardown
    yield service
    service.stop()


class PostgresDatabases:
    """Creates uniquely named databases on one server and drops them all at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url)
        self.admin = create_engine(self.admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def create(self) -> str:
        name = f"test_{secrets.token_hex(6)}"
        with self.admin.connect() as connection:
            # template0 + C locale: UTF-8 whatever the cluster's default, and byte-order text
            # sorting like SQLite's, so both backends order strings the same way.
            connection.exec_driver_sql(
                f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            )
        self.names.append(name)
        url: URL = self.admin_url.set(database=name)
        return url.render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            force = (connection.dialect.server_version_info or (0,)) >= (13,)
            while self.names:
                name = self.names.pop()
                if not force:  # before PostgreSQL 13: end leftover sessions by hand
                    connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": name},
                    )
                with_force = " WITH (FORCE)" if force else ""
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{with_force}")
        self.admin.dispose()


class FreshDatabases:
    """Hands out new empty databases for one test, on either backend."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request, self.tmp_path = request, tmp_path
        self.sqlite_files = 0
        self.postgres: PostgresDatabases | None = None

    def new(self, backend: str) -> str:
        if backend == "sqlite":
            self.sqlite_files += 1
            return f"sqlite:///{self.tmp_path / f'journey-{self.sqlite_files}.db'}"
        if backend != "postgresql":
            raise ValueError(f"unknown backend {backend!r}")
        if self.postgres is None:
            service: Service = self.request.getfixturevalue("postgres_service")
            self.postgres = PostgresDatabases(service.require())
        return self.postgres.create()

    def close(self) -> None:
        if self.postgres is not None:
            self.postgres.drop_all()


@pytest.fixture
def fresh_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FreshDatabases]:
    databases = FreshDatabases(request, tmp_path)
    yield databases
    databases.close()


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, fresh_databases: FreshDatabases) -> str:
    """A URL of a brand-new, empty (unmigrated) database; the test runs once per backend."""
    backend: str = request.param
    return fresh_databases.new(backend)


@pytest.fixture
def make_database_url(database_url: str, fresh_databases: FreshDatabases) -> Callable[[], str]:
    """More fresh databases on the same backend as ``database_url``."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    return lambda: fresh_databases.new(backend)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """``Database(database_url)``, migrated to head, disposed after the test."""
    database = Database(database_url)
    yield database
    database.dispose()


# --- Redis -------------------------------------------------------------------------------


class RedisError(Exception):
    pass


class Resp:
    """Just enough of the Redis protocol to probe a server and manage test databases."""

    def __init__(self, url: str, timeout: float = 3) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise RedisError(f"only redis:// URLs are supported here, not {parts.scheme}://")
        self.sock = socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout
        )
        self.reader = self.sock.makefile("rb")
        if parts.password is not None:
            user = [unquote(parts.username)] if parts.username else []
            self.call("AUTH", *user, unquote(parts.password))

    def call(self, *args: str) -> object:
        out = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = arg.encode()
            out += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(out)
        return self.read()

    def read(self) -> object:
        line = self.reader.readline()
        if not line:
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:].rstrip(b"\r\n").decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if int(rest) < 0:
                return None
            data = self.reader.read(int(rest) + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            return None if int(rest) < 0 else [self.read() for _ in range(int(rest))]
        raise RedisError(f"unexpected reply {line!r}")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> Resp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def redis_problem(url: str) -> str | None:
    try:
        with Resp(url) as redis:
            return None if redis.call("PING") == "PONG" else "PING did not answer PONG"
    except (OSError, RedisError) as exc:
        return one_line(exc)


def start_throwaway_redis(service: Service) -> str:
    binary = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).is_file()),
        None,
    )
    if binary is None:
        raise RuntimeError("no redis-server on PATH or in /usr/bin, /usr/sbin")
    base = Path(tempfile.mkdtemp(prefix="journey-redis-"))
    service.stops.append(lambda: shutil.rmtree(base, ignore_errors=True))
    port, log = free_port(), base / "redis.log"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(base), "--logfile", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C in the terminal is pytest's, not the server's
    )  # fmt: skip

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    service.stops.append(stop)
    url = f"redis://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while (problem := redis_problem(url)) is not None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start: {problem} {log_tail(log)}".strip())
        time.sleep(0.05)
    service.how = f"throwaway redis-server ({binary}) on 127.0.0.1:{port}"
    return url


def find_redis() -> Service:
    service = Service("redis")
    url = os.environ.get(REDIS_ENV) or DEFAULT_REDIS_URL
    url = url.rstrip("/")
    if re.search(r"/\d+$", urlsplit(url).path):  # a database number: the fixture picks its own
        url = url.rsplit("/", 1)[0]
    problem = redis_problem(url)
    if problem is None:
        service.url, service.how = url, f"server at {url}"
        return service
    why = f"{url} ({REDIS_ENV}): {problem}"
    if not throwaway_allowed():
        service.problem = (
            f"Redis unavailable: {why}; throwaway servers are turned off "
            f"({THROWAWAY_ENV}=0). To fix, {INSTALL_REDIS}."
        )
        return service
    try:
        service.url = start_throwaway_redis(service)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        service.stop()
        service.problem = (
            f"Redis unavailable: {why}; no throwaway server either: "
            f"{one_line(exc)}. To fix, {INSTALL_REDIS}."
        )
    return service


@pytest.fixture(scope="session")
def redis_service() -> Iterator[Service]:
    """The Redis server for this session (looked for once, on first use)."""
    service = SERVICES["redis"] = find_redis()
    atexit.register(service.stop)
    yield service
    service.stop()


def claim_redis_database(redis: Resp, token: str) -> int | None:
    """Claim an empty database number 1-15 with ``token``; None when there is none."""
    for number in range(1, 16):
        claim = f"journey-test:claim:{number}"
        if redis.call("SET", claim, token, "NX", "EX", "3600") != "OK":
            continue  # another test (or session) has it
        try:
            redis.call("SELECT", str(number))
            size = redis.call("DBSIZE")
        except RedisError:  # beyond the server's `databases` setting
            size = None
        redis.call("SELECT", "0")
        if size == 0:
            return number
        redis.call("DEL", claim)  # someone's data: leave it alone
        if size is None:
            return None
    return None


@pytest.fixture
def redis_url(redis_service: Service) -> Iterator[str]:
    """``redis://host:port/<n>``: a database number that is empty and this test's alone.

    Numbers 1-15 are claimed with an expiring ``journey-test:claim:<n>`` key in database 0
    (so parallel sessions on one server never share), a non-empty database is never
    touched, and the claimed one is flushed after the test.
    """
    server = redis_service.require()
    token = secrets.token_hex(8)
    with Resp(server) as redis:
        number = claim_redis_database(redis, token)
    if number is None:
        pytest.fail(f"no empty Redis database among 1-15 at {server} for this test")
    claim = f"journey-test:claim:{number}"
    try:
        yield f"{server}/{number}"
    finally:
        with Resp(server) as redis:
            redis.call("SELECT", str(number))
            redis.call("FLUSHDB")
            redis.call("SELECT", "0")
            if redis.call("GET", claim) == token:
                redis.call("DEL", claim)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for service in SERVICES.values():
        shown = service.how if service.url else f"unavailable: {service.problem}"
        terminalreporter.write_line(f"{service.name}: {shown}")


@pytest.fixture
def clock() -> Clock:
    """A settable clock at ``T0`` (``tests.live.clock``), for the engine run by hand."""
    return Clock(T0)
