"""``journey run`` makes up what is not configured (write key, admin token, secret key) and
keeps it in ``.data/credentials.json`` (0600) across restarts."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from engine.live.commands import _remembered_credentials
from engine.settings import MIN_SECRET_KEY, Settings


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_secret_key_is_made_up_and_kept(here: Path) -> None:
    first = _remembered_credentials()
    assert len(first["secret_key"]) >= MIN_SECRET_KEY
    assert Settings(secret_key=first["secret_key"]).secret_key is not None  # long enough
    assert _remembered_credentials() == first
    path = here / ".data" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_file_from_before_secret_keys_keeps_its_write_key(here: Path) -> None:
    (here / ".data").mkdir()
    old = {"write_key": "wk-old", "admin_token": "admin-old"}
    (here / ".data" / "credentials.json").write_text(json.dumps(old))
    made = _remembered_credentials()
    assert (made["write_key"], made["admin_token"]) == ("wk-old", "admin-old")
    assert len(made["secret_key"]) >= MIN_SECRET_KEY
    assert json.loads((here / ".data" / "credentials.json").read_text()) == made


def test_a_short_secret_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_SECRET_KEY", "short")
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings()
