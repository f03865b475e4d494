"""A DingTalk channel for journey-engine, added through the ``journey.channels`` entry point.

The sender posts to a DingTalk custom robot (自定义机器人) webhook with the "加签"
security setting: every request carries ``timestamp`` (milliseconds) and ``sign``, the
base64 HMAC-SHA256 of ``"{timestamp}\\n{secret}"`` keyed with the secret. Messages are
markdown and @-mention the user by ``dingtalk_userid``. DingTalk allows a robot 20
messages a minute; ``account_rates`` tells the engine so.

Errors: ``errcode`` 130101 (sending too fast) is throttling; 310000 (signature, keyword
or IP check failed) and 300001 (bad access token) hold the channel as credential errors;
-1 (busy) is transient; anything else refuses the message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.channels import ChannelSpec
from engine.channels.plugins import ChannelPlugin, ProviderSpec
from engine.channels.rates import Rate
from engine.channels.senders import OutboundMessage, Receipt
from engine.channels.settings import ChannelSettings
from engine.errors import (
    CredentialError,
    PermanentDeliveryError,
    ProviderThrottled,
    TransientDeliveryError,
)

CHANNEL = ChannelSpec("dingtalk", "dingtalk_userid", ("content",), ("title",))


class DingTalkSettings(BaseSettings):
    """``JOURNEY_DINGTALK_ROBOT_URL`` and ``JOURNEY_DINGTALK_SECRET``."""

    model_config = SettingsConfigDict(env_prefix="JOURNEY_DINGTALK_", extra="ignore")

    robot_url: str | None = None
    secret: SecretStr | None = None


def signature(timestamp_ms: int, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


class DingTalkRobot:
    provider = "dingtalk_robot"
    account_rates = (Rate(20, 60.0),)

    def __init__(
        self,
        url: str,
        secret: str | None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = "robot:" + hashlib.sha256(url.encode()).hexdigest()[:12]
        self._url = url
        self._secret = secret
        self._clock = clock
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))

    def close(self) -> None:
        self._client.close()

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        content = message.content["content"]
        title = message.content.get("title") or content.splitlines()[0][:20]
        return {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": f"{content}\n\n@{message.to}"},
            "at": {"atUserIds": [message.to], "isAtAll": False},
        }

    def send(self, message: OutboundMessage) -> Receipt:
        params: dict[str, str] = {}
        if self._secret:
            now = int(self._clock() * 1000)
            params = {"timestamp": str(now), "sign": signature(now, self._secret)}
        try:
            response = self._client.post(self._url, params=params, json=self.body(message))
        except httpx.TransportError as exc:
            raise TransientDeliveryError(f"DingTalk: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise TransientDeliveryError(f"DingTalk: HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise PermanentDeliveryError(f"DingTalk: HTTP {response.status_code}") from None
        errcode = answer.get("errcode")
        text = f"DingTalk errcode {errcode}: {answer.get('errmsg', '')}"
        if errcode == 0:
            return Receipt(self.provider, None)
        if errcode == 130101:
            raise ProviderThrottled(text, retry_after=60.0)
        if errcode in (310000, 300001):
            raise CredentialError(text)
        if errcode == -1:
            raise TransientDeliveryError(text)
        raise PermanentDeliveryError(text)


def build(settings: ChannelSettings) -> DingTalkRobot | None:
    """The sender, or None while the robot is not configured (the channel stays on the sink)."""
    config = DingTalkSettings()
    if not config.robot_url:
        return None
    secret = config.secret.get_secret_value() if config.secret else None
    return DingTalkRobot(config.robot_url, secret, settings.send_timeout)


plugin = ChannelPlugin(
    "dingtalk",
    channels=(CHANNEL,),
    providers=(ProviderSpec("dingtalk", "robot", build),),
)
