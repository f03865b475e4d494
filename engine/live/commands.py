"""The ``journey deploy`` and ``journey run`` commands (imported lazily: the server stack
is not needed to validate or simulate)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError

from engine.channels.config import build_channels
from engine.errors import CompileError, ConfigurationError
from engine.live.embedded import Workers
from engine.live.engine import LiveEngine
from engine.progress import progress_bar
from engine.project import SourceTree
from engine.settings import Settings
from engine.store.audit import os_actor
from engine.store.database import DEFAULT_SQLITE_PATH, Database, make_private_directory
from engine.store.deployments import deploy
from engine.store.lifecycle import State, apply_journey_state
from engine.store.privacy import export, forget

log = logging.getLogger("journey.run")
#: Credentials made up when none are configured, beside the embedded database.
CREDENTIALS_FILE = DEFAULT_SQLITE_PATH.parent / "credentials.json"


def _deploy(db: Database, journeys_dir: Path, templates: Path | None) -> bool:
    if not journeys_dir.is_dir():
        print(f"{journeys_dir}: not a directory", file=sys.stderr)
        return False
    try:
        with progress_bar(f"deploying {journeys_dir}"):
            result = deploy(db, SourceTree.from_directory(journeys_dir, templates))
    except CompileError as exc:
        exc.report(sys.stderr)
        return False
    except (OSError, SQLAlchemyError) as exc:
        print(f"deploy failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    state = "already running" if result.unchanged else "deployed"
    ids = ", ".join(f"{journey}@{version[:8]}" for journey, version in result.journeys)
    print(f"{state}: version {result.version} (deployment {result.deployment_id}): {ids}")
    return True


def deploy_directory(journeys_dir: Path, templates: Path | None) -> int:
    """``journey deploy``: a running engine picks the new version up on its next round."""
    settings = Settings()
    db = Database(settings.database_url)
    try:
        return 0 if _deploy(db, journeys_dir, templates) else 1
    finally:
        db.dispose()


#: What ``journey run`` makes up when it is not configured, and how long each is.
MADE_UP = {"write_key": 18, "admin_token": 24, "secret_key": 32}


def change_journey(journey_id: str, state: State) -> int:
    """``journey pause|resume|stop``: change a deployed journey's state."""
    db = Database(Settings().database_url)
    try:
        result = apply_journey_state(db, journey_id, state, os_actor())
    finally:
        db.dispose()
    if result is None:
        print(f"no deployed journey {journey_id!r}", file=sys.stderr)
        return 1
    changed, ended = result
    what = {"active": "running", "paused": "paused", "stopped": "stopped"}[state]
    already = "" if changed else " already"
    print(f"{journey_id}: {what}{already}" + (f"; {ended} run(s) ended" if ended else ""))
    return 0


def forget_user(user_id: str) -> int:
    """``journey forget``: erase the user and say what was erased."""
    db = Database(Settings().database_url)
    try:
        with db.transaction() as session:
            erasure = forget(session, user_id, datetime.now(UTC))
    finally:
        db.dispose()
    if erasure.user_key is None:
        print(f"no data held for {user_id!r}; its ids are tombstoned all the same")
        return 0
    done = erasure.as_json()
    del done["user_key"]
    print("erased: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in done.items()))
    return 0


def export_user(user_id: str) -> int:
    """``journey export``: everything held about the user, as JSON on stdout."""
    db = Database(Settings().database_url)
    try:
        with db.transaction() as session:
            document = export(session, user_id)
    finally:
        db.dispose()
    if document is None:
        print(f"no data held for {user_id!r}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _remembered_credentials() -> dict[str, str]:
    """The write key, admin token and secret key made up for this directory, kept across
    restarts (mode 0600) so SDKs configured with them, and unsubscribe links already
    sent, keep working. One missing from the file (written by an older version) is made
    up and added; the others are kept."""
    path = CREDENTIALS_FILE
    stored: dict[str, str] = {}
    try:
        found = json.loads(path.read_text("utf-8"))
        if isinstance(found, dict):
            stored = {k: str(v) for k, v in found.items() if k in MADE_UP and v}
    except (OSError, ValueError):
        pass
    if stored.keys() == MADE_UP.keys():
        return stored
    made = {k: stored.get(k) or secrets.token_urlsafe(n) for k, n in MADE_UP.items()}
    make_private_directory(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(made, handle)
    return made


def remember_credentials(settings: Settings) -> dict[str, str]:
    """Fill in a write key, admin token and secret key where the environment sets none
    (made up once, kept in ``.data/credentials.json``); returns the ``JOURNEY_*`` variables
    of the ones made up, for child processes to inherit."""
    remembered = _remembered_credentials()
    made_up: dict[str, str] = {}
    if not settings.write_keys:
        settings.write_keys = [remembered["write_key"]]
        made_up["JOURNEY_WRITE_KEYS"] = remembered["write_key"]
    if settings.admin_token is None and not settings.admin_tokens:
        settings.admin_token = SecretStr(remembered["admin_token"])
        made_up["JOURNEY_ADMIN_TOKEN"] = remembered["admin_token"]
    if settings.secret_key is None:  # signs unsubscribe links; never printed
        settings.secret_key = SecretStr(remembered["secret_key"])
        made_up["JOURNEY_SECRET_KEY"] = remembered["secret_key"]
    return made_up


def run_embedded(
    journeys_dir: Path, templates: Path | None, host: str | None, port: int | None
) -> int:
    """``journey run``: deploy, then serve the API and run the engine in this process."""
    import uvicorn

    from engine.api.app import create_app
    from engine.api.logs import log_config

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings()
    host = host or settings.host
    port = port if port is not None else settings.port
    made = remember_credentials(settings)
    made_up = [
        what
        for what, env in (
            ("write key", "JOURNEY_WRITE_KEYS"),
            ("admin token", "JOURNEY_ADMIN_TOKEN"),
            ("secret key", "JOURNEY_SECRET_KEY"),
        )
        if env in made
    ]
    public_url = settings.public_url
    if "JOURNEY_PUBLIC_URL" not in os.environ:
        public_url = f"http://{host}:{port}"
    try:
        channels = build_channels(settings)
    except ConfigurationError as exc:
        print(f"journey run: {exc}", file=sys.stderr)
        return 2
    db = Database(settings.database_url)
    if not _deploy(db, journeys_dir, templates):
        channels.close()
        return 1
    assert settings.secret_key is not None  # remember_credentials made one up if unset
    engine = LiveEngine(
        db,
        channels.registry,
        public_url=public_url,
        send_timeout=settings.send_timeout,
        claim_lease=timedelta(seconds=settings.send_lease),
        secret_key=settings.secret_key.get_secret_value(),
    )
    workers = Workers(engine, retention=settings.event_retention)
    app = create_app(db, settings, on_ingest=workers.wake)
    url = f"http://{host}:{port}"
    write_key = settings.write_keys[0]
    # remember_credentials made one up if none is configured
    admin_name, admin = next(iter(settings.named_admin_tokens().items()))
    note = {
        what: f"   (made up, kept in {CREDENTIALS_FILE}; {env} sets your own)"
        if what in made_up
        else ""
        for what, env in (
            ("write key", "JOURNEY_WRITE_KEYS"),
            ("admin token", "JOURNEY_ADMIN_TOKEN"),
        )
    }
    admin_note = note["admin token"] + (f"   (named {admin_name})" if admin_name != "admin" else "")
    where = db.url.split("@")[-1]
    channel_lines = "\n".join(f"  {line}" for line in channels.describe())
    secret_note = (
        f"made up, kept in {CREDENTIALS_FILE}; JOURNEY_SECRET_KEY sets your own"
        if "secret key" in made_up
        else "from JOURNEY_SECRET_KEY"
    )
    print(
        f"""
journey engine running at {url}   (database: {where})
  write key    {write_key}{note["write key"]}
  admin token  {admin}{admin_note}
  dashboard    {url}/dashboard   (sign in with an admin token)
  secret key   (signs unsubscribe links; {secret_note})

Send an event:
  curl -u {write_key}: {url}/v1/track -H 'Content-Type: application/json' \\
    -d '{{"userId": "u1", "event": "Signed Up", "properties": {{}}}}'
See what the engine did:
  curl -H 'Authorization: Bearer {admin}' {url}/api/users/u1

Channels:
{channel_lines}
""",
        flush=True,
    )
    workers.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", log_config=log_config())
    finally:
        workers.stop()
        channels.close()
        db.dispose()
    return 0
