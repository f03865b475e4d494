"""A channel from another package: examples/journey_dingtalk, found by its entry point.

The example is made importable and "installed" the way pip would: a ``dist-info``
directory whose ``entry_points.txt`` is written from the example's own pyproject.toml.
The engine then finds it, journeys may name the channel, and its sender delivers to a
local server that checks DingTalk's robot signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import textwrap
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine.channels
from engine.channels import get_channel
from engine.channels.config import build_channels
from engine.channels.plugins import ENTRY_POINT_GROUP, load_plugins
from engine.channels.senders import OutboundMessage
from engine.cli import main
from engine.errors import CredentialError, EngineError
from engine.project import compile_project
from engine.settings import Settings
from tests.channels.fakes.http import Reply, Request, serve

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "journey_dingtalk"
SECRET = "SECexample0123456789"


def install(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """What pip leaves behind for a package: its metadata and entry points."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    pyproject = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    points = pyproject["project"]["entry-points"][ENTRY_POINT_GROUP]
    install(tmp_path / "site", pyproject["project"]["name"], points)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    # Channels registered here stay in this test.
    monkeypatch.setattr(engine.channels, "_REGISTRY", dict(engine.channels._REGISTRY))
    yield


class DingTalkFake:
    """DingTalk's robot endpoint with the 加签 check."""

    def __init__(self) -> None:
        self.posts: list[dict[str, object]] = []

    def __call__(self, request: Request) -> Reply:
        stamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
        mac = hmac.new(SECRET.encode(), f"{stamp}\n{SECRET}".encode(), hashlib.sha256)
        fresh = stamp.isdigit() and abs(time.time() * 1000 - int(stamp)) < 3_600_000
        if not fresh or not hmac.compare_digest(sign, base64.b64encode(mac.digest()).decode()):
            return Reply(200, {"errcode": 310000, "errmsg": "sign not match"})
        self.posts.append(request.json())
        return Reply(200, {"errcode": 0, "errmsg": "ok"})


def test_the_example_is_found_and_its_channel_registered(installed: None) -> None:
    plugins = load_plugins()
    assert [plugin.name for plugin in plugins] == ["dingtalk"]
    spec = get_channel("dingtalk")
    assert spec is not None and spec.address_trait == "dingtalk_userid"
    assert spec.single_part == "content"


def test_journeys_may_name_the_channel(installed: None, tmp_path: Path) -> None:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "j.yaml").write_text(
        textwrap.dedent("""\
        id: ding
        name: DingTalk hello · 钉钉欢迎
        trigger: {event: Signed Up}
        start: hello
        steps:
          hello:
            send: {channel: dingtalk, content: {content: "欢迎 {{ profile.name }}"}}
            next: end
    """)
    )
    assert main(["validate", str(tmp_path / "journeys")]) == 0  # the CLI loads plugins first
    project = compile_project(tmp_path / "journeys")
    assert "ding" in project.journeys


def test_its_sender_delivers_signed(installed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = DingTalkFake()
    with serve(fake) as server:
        monkeypatch.setenv("JOURNEY_DINGTALK_ROBOT_URL", f"{server.url}/robot/send?access_token=t")
        monkeypatch.setenv("JOURNEY_DINGTALK_SECRET", SECRET)
        setup = build_channels(Settings())
        assert setup.providers["dingtalk"] == "robot"
        message = OutboundMessage("msg_ding01", "dingtalk", "user123", {"content": "**新品** 上架"})
        setup.registry.for_channel("dingtalk").send(message)
        monkeypatch.setenv("JOURNEY_DINGTALK_SECRET", "SECwrong")
        wrong = build_channels(Settings())
        with pytest.raises(CredentialError, match="310000"):
            wrong.registry.for_channel("dingtalk").send(message)
        setup.close()
        wrong.close()
    assert fake.posts == [
        {
            "msgtype": "markdown",
            "markdown": {"title": "**新品** 上架", "text": "**新品** 上架\n\n@user123"},
            "at": {"atUserIds": ["user123"], "isAtAll": False},
        }
    ]


def test_unconfigured_it_stays_on_the_sink(installed: None) -> None:
    setup = build_channels(Settings())
    assert "dingtalk" in setup.on_sink
    assert any(line.startswith("dingtalk: local sink") for line in setup.describe())


def test_a_broken_plugin_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path / "site", "journey-broken", {"broken": "journey_broken_missing:plugin"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(EngineError, match=r"'broken'.*failed to load"):
        load_plugins()
