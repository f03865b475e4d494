"""From environment variables to senders: providers chosen, guarded, or the local sink."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from engine.channels.breaker import RedisBreakerStore
from engine.channels.config import build_channels
from engine.channels.guard import GuardedSender
from engine.channels.providers.aliyun import AliyunSms
from engine.channels.ratelimit import RedisRateLimiter
from engine.channels.rates import Rate
from engine.channels.senders import LocalSink, OutboundMessage
from engine.errors import ConfigurationError
from engine.settings import Settings
from tests.channels.fakes.fcm import FcmFake
from tests.channels.fakes.http import serve
from tests.channels.fakes.twilio import TwilioFake
from tests.channels.fakes.wecom import WeComFake


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in list(os.environ):
        if name.startswith("JOURNEY_"):
            monkeypatch.delenv(name)
    yield monkeypatch


def test_nothing_set_means_every_channel_on_the_sink(env: pytest.MonkeyPatch) -> None:
    setup = build_channels(Settings(), plugins=())
    assert setup.on_sink == ("email", "push", "sms", "wecom")
    assert isinstance(setup.registry.for_channel("sms"), LocalSink)
    assert setup.describe()[0] == (
        "email: local sink, nothing reaches a person (set JOURNEY_EMAIL_PROVIDER)"
    )


def test_a_chosen_provider_missing_settings_names_them_all(env: pytest.MonkeyPatch) -> None:
    env.setenv("JOURNEY_SMS_PROVIDER", "aliyun")
    env.setenv("JOURNEY_ALIYUN_SMS_SIGN_NAME", "悦品商城")
    with pytest.raises(ConfigurationError) as caught:
        build_channels(Settings(), plugins=())
    assert caught.value.setting == "JOURNEY_ALIYUN_ACCESS_KEY_ID"
    assert "JOURNEY_ALIYUN_ACCESS_KEY_SECRET" in str(caught.value)
    assert "SIGN_NAME" not in str(caught.value)


def test_an_unknown_provider_lists_the_known_ones(env: pytest.MonkeyPatch) -> None:
    env.setenv("JOURNEY_SMS_PROVIDER", "carrier-pigeon")
    with pytest.raises(ConfigurationError, match=r"JOURNEY_SMS_PROVIDER.*aliyun, twilio"):
        build_channels(Settings(), plugins=())


def test_env_alone_points_every_channel_at_its_provider(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    twilio, wecom, fcm = TwilioFake(), WeComFake(), FcmFake()
    with serve(twilio) as t, serve(wecom) as w, serve(fcm) as f:
        fcm.base_url = f.url
        key = tmp_path / "firebase.json"
        key.write_text(json.dumps(fcm.service_account()))
        env.setenv("JOURNEY_SMS_PROVIDER", "Twilio")
        env.setenv("JOURNEY_TWILIO_ACCOUNT_SID", twilio.account_sid)
        env.setenv("JOURNEY_TWILIO_AUTH_TOKEN", twilio.auth_token)
        env.setenv("JOURNEY_TWILIO_FROM", "+15005550006")
        env.setenv("JOURNEY_TWILIO_BASE_URL", t.url + "/")
        env.setenv("JOURNEY_SMS_RATE_LIMIT", "10/s")
        env.setenv("JOURNEY_WECOM_PROVIDER", "app")
        env.setenv("JOURNEY_WECOM_CORP_ID", wecom.corp_id)
        env.setenv("JOURNEY_WECOM_SECRET", wecom.secret)
        env.setenv("JOURNEY_WECOM_AGENT_ID", str(wecom.agent_id))
        env.setenv("JOURNEY_WECOM_BASE_URL", w.url)
        env.setenv("JOURNEY_PUSH_PROVIDER", "fcm")
        env.setenv("JOURNEY_FCM_SERVICE_ACCOUNT", str(key))
        env.setenv("JOURNEY_FCM_BASE_URL", f.url)
        setup = build_channels(Settings(), plugins=())
        assert setup.providers == {"sms": "twilio", "wecom": "app", "push": "fcm"}
        assert setup.on_sink == ("email",)
        sms = setup.registry.for_channel("sms")
        assert isinstance(sms, GuardedSender) and sms.account_rates == (Rate(10, 1.0),)
        wecom_sender = setup.registry.for_channel("wecom")
        assert isinstance(wecom_sender, GuardedSender)
        assert wecom_sender.recipient_rates == (Rate(30, 60.0), Rate(1000, 3600.0))
        sms.send(OutboundMessage("msg_cfg01", "sms", "+8613800138000", {"text": "hi"}))
        wecom_sender.send(OutboundMessage("msg_cfg02", "wecom", "lilei", {"content": "hi"}))
        setup.registry.for_channel("push").send(
            OutboundMessage("msg_cfg03", "push", "token-of-lilei", {"title": "t", "body": "b"})
        )
        setup.close()
        assert "sms: twilio (AC" in "\n".join(setup.describe())
    assert (len(twilio.sent), len(wecom.sent), len(fcm.sent)) == (1, 1, 1)


def test_the_robot_keeps_its_own_rate_unless_told(env: pytest.MonkeyPatch) -> None:
    env.setenv("JOURNEY_WECOM_PROVIDER", "robot")
    env.setenv("JOURNEY_WECOM_ROBOT_URL", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
    robot = build_channels(Settings(), plugins=()).registry.for_channel("wecom")
    assert isinstance(robot, GuardedSender) and robot.account_rates == (Rate(20, 60.0),)
    env.setenv("JOURNEY_WECOM_RATE_LIMIT", "10/min")
    robot = build_channels(Settings(), plugins=()).registry.for_channel("wecom")
    assert isinstance(robot, GuardedSender) and robot.account_rates == (Rate(10, 60.0),)


def test_unguarded_senders_on_request(env: pytest.MonkeyPatch) -> None:
    env.setenv("JOURNEY_SMS_PROVIDER", "aliyun")
    env.setenv("JOURNEY_ALIYUN_ACCESS_KEY_ID", "LTAI")
    env.setenv("JOURNEY_ALIYUN_ACCESS_KEY_SECRET", "s")
    env.setenv("JOURNEY_ALIYUN_SMS_SIGN_NAME", "悦品商城")
    env.setenv("JOURNEY_ALIYUN_SMS_ENDPOINT", "dysmsapi.aliyuncs.com")
    setup = build_channels(Settings(), plugins=(), guard=False)
    assert isinstance(setup.registry.for_channel("sms"), AliyunSms)
    assert setup.accounts == {"sms": "LTAI"}


def test_with_redis_every_worker_shares_limits_and_breakers(
    env: pytest.MonkeyPatch, redis_url: str
) -> None:
    env.setenv("JOURNEY_REDIS_URL", redis_url)
    env.setenv("JOURNEY_WECOM_PROVIDER", "robot")
    env.setenv("JOURNEY_WECOM_ROBOT_URL", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
    robot = build_channels(Settings(), plugins=()).registry.for_channel("wecom")
    assert isinstance(robot, GuardedSender)
    assert isinstance(robot.limiter, RedisRateLimiter)
    assert isinstance(robot.breaker.store, RedisBreakerStore)
    robot.breaker.record(RuntimeError("x"))
    with Redis.from_url(redis_url) as client:
        assert client.keys("journey:breaker:*")
