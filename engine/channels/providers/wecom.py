"""WeCom (企业微信): the app message API, and the group robot webhook.

**App** (``JOURNEY_WECOM_PROVIDER=app``): ``GET /cgi-bin/gettoken?corpid=&corpsecret=``
gives an ``access_token`` valid ``expires_in`` seconds, cached and shared; ``POST
/cgi-bin/message/send?access_token=`` with ``touser`` (the member's ``wecom_userid``),
``agentid`` and one of:

- ``markdown`` (the default: the ``content`` part is WeCom markdown),
- ``textcard`` when the template also gives ``title`` and ``url`` parts (``content`` is
  the card's description; ``params["btntxt"]`` its button),
- ``text`` when ``params["msgtype"]`` says so (``params["msgtype"]`` may also force
  ``markdown``).

A token refused as invalid or expired (40014, 42001, 41001) is fetched again and the
call made once more. A member WeCom does not know, or outside the app's visible range,
comes back in ``invaliduser``/``unlicenseduser`` (or as 81013 when nobody was valid): a
bad address. WeCom allows an app 30 messages per member per minute and 1000 per hour and
silently drops the rest, so the sender declares those limits (``recipient_rates``).

**Robot** (``JOURNEY_WECOM_PROVIDER=robot``): ``POST`` to the webhook URL
(``JOURNEY_WECOM_ROBOT_URL``, with its ``key``) posts into a group chat, mentioning the
member: ``text`` with ``mentioned_list``, ``markdown`` with ``<@userid>``, or a one-article
``news`` card for ``title`` + ``url``. A robot may post 20 messages a minute.

Idempotency: neither API takes a key (the app's ``enable_duplicate_check`` compares
content, not ids, and would drop two different messages that read the same; it is not
used). The message id travels nowhere.

``errcode``: -1 (busy) transient; 45009 (frequency) and 45033 (concurrency) throttling;
bad corp id, secret, agent id, untrusted IP, a disabled API or a bad robot key
(40001, 40013, 40056, 60020, 48002, 93000...) are credential errors holding the channel;
anything else refuses the message for good.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from engine.channels.http import json_object, make_client, redact, request, status_error
from engine.channels.rates import Rate, parse_rates
from engine.channels.senders import OutboundMessage, Receipt
from engine.channels.settings import ChannelSettings, Required
from engine.channels.tokens import TokenCache
from engine.errors import (
    ConfigurationError,
    CredentialError,
    DeliveryError,
    InvalidAddress,
    PermanentDeliveryError,
    ProviderThrottled,
    TransientDeliveryError,
)

TOKEN_ERRORS = frozenset({40014, 42001, 41001})
CREDENTIAL_ERRORS = frozenset({40001, 40013, 40056, 40091, 41002, 41004, 48002, 60020, 93000})
ADDRESS_ERRORS = frozenset({81013, 40003})
MSGTYPES = ("markdown", "text", "textcard")
ROBOT_RATE = Rate(20, 60.0)


def classify(errcode: int, errmsg: str, what: str) -> DeliveryError:
    """The error for a WeCom ``errcode`` other than 0."""
    text = f"{what} errcode {errcode}: {errmsg}"
    if errcode == -1:
        return TransientDeliveryError(text, retry_after=1.0)
    if errcode == 45009:
        return ProviderThrottled(text, retry_after=60.0)
    if errcode == 45033:
        return ProviderThrottled(text, retry_after=1.0)
    if errcode in CREDENTIAL_ERRORS or errcode in TOKEN_ERRORS:
        return CredentialError(text)
    if errcode in ADDRESS_ERRORS:
        return InvalidAddress(text, trait="wecom_userid")
    return PermanentDeliveryError(text)


def _answer(response: httpx.Response, what: str) -> Mapping[str, Any]:
    """The JSON answer of a WeCom call, or the error for a response that is not one."""
    body = json_object(response)
    if response.status_code != 200 or body is None or not isinstance(body.get("errcode"), int):
        raise status_error(response, what)
    return body


def _msgtype(message: OutboundMessage, card: bool) -> str:
    chosen = message.params.get("msgtype") or ("textcard" if card else "markdown")
    if chosen not in MSGTYPES:
        raise PermanentDeliveryError(f"WeCom msgtype {chosen!r}: use one of {', '.join(MSGTYPES)}")
    return chosen


class WeComApp:
    """Sends app messages to members, as the app ``agent_id`` of corp ``corp_id``."""

    provider = "wecom_app"

    def __init__(
        self,
        corp_id: str,
        secret: str,
        agent_id: int,
        base_url: str = "https://qyapi.weixin.qq.com",
        timeout: float = 10.0,
        member_rates: tuple[Rate, ...] = (Rate(30, 60.0), Rate(1000, 3600.0)),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.account = f"{corp_id}:{agent_id}"
        self.recipient_rates = member_rates
        self._corp_id = corp_id
        self._secret = secret
        self._agent_id = agent_id
        self._base = base_url.rstrip("/")
        self._client = make_client(timeout, transport)
        self.tokens = TokenCache(self._fetch_token)

    def close(self) -> None:
        self._client.close()

    def _fetch_token(self) -> tuple[str, float]:
        response = request(
            self._client,
            "GET",
            f"{self._base}/cgi-bin/gettoken",
            "WeCom gettoken",
            params={"corpid": self._corp_id, "corpsecret": self._secret},
        )
        body = _answer(response, "WeCom gettoken")
        if body["errcode"] != 0 or not body.get("access_token"):
            raise classify(body["errcode"], str(body.get("errmsg", "")), "WeCom gettoken")
        return str(body["access_token"]), float(body.get("expires_in", 7200))

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        content = message.content.get("content", "")
        title, url = message.content.get("title"), message.content.get("url")
        msgtype = _msgtype(message, bool(title and url))
        payload: dict[str, Any] = {
            "touser": message.to,
            "msgtype": msgtype,
            "agentid": self._agent_id,
        }
        if msgtype == "textcard":
            if not (title and url):
                raise PermanentDeliveryError("a WeCom textcard needs title and url parts")
            card = {"title": title, "description": content, "url": url}
            if message.params.get("btntxt"):
                card["btntxt"] = message.params["btntxt"]
            payload["textcard"] = card
        else:
            payload[msgtype] = {"content": content}
        return payload

    def send(self, message: OutboundMessage) -> Receipt:
        payload = self.body(message)
        for attempt in (1, 2):
            token = self.tokens.get()
            response = request(
                self._client,
                "POST",
                f"{self._base}/cgi-bin/message/send",
                "WeCom message/send",
                params={"access_token": token},
                json=payload,
            )
            body = _answer(response, "WeCom message/send")
            errcode = body["errcode"]
            if errcode in TOKEN_ERRORS and attempt == 1:
                self.tokens.invalidate(token)
                continue
            if errcode != 0:
                said = redact(str(body.get("errmsg", "")), message.to)
                raise classify(errcode, said, "WeCom message/send")
            refused = {
                user
                for field in ("invaliduser", "unlicenseduser")
                for user in str(body.get(field) or "").lower().split("|")
                if user
            }
            if message.to.lower() in refused:
                raise InvalidAddress(
                    "WeCom refused the member (unknown, or outside the app's visible range)",
                    trait="wecom_userid",
                )
            msgid = body.get("msgid")
            return Receipt(self.provider, str(msgid) if msgid else None)
        raise CredentialError("WeCom refused a freshly fetched access token")


class WeComRobot:
    """Posts into a group chat through its robot webhook, mentioning the member."""

    provider = "wecom_robot"

    def __init__(
        self, url: str, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        parts = urlsplit(url)
        key = parse_qs(parts.query).get("key", [""])[0]
        if not parts.scheme or not parts.netloc or not key:
            raise ConfigurationError(
                "JOURNEY_WECOM_ROBOT_URL", "expected the webhook URL, .../webhook/send?key=..."
            )
        self.account = "robot:" + hashlib.sha256(key.encode()).hexdigest()[:12]
        self.account_rates = (ROBOT_RATE,)
        self._url = url
        self._client = make_client(timeout, transport)

    def close(self) -> None:
        self._client.close()

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        content = message.content.get("content", "")
        title, url = message.content.get("title"), message.content.get("url")
        msgtype = _msgtype(message, bool(title and url))
        if msgtype == "textcard":
            article = {"title": title, "description": content, "url": url}
            return {"msgtype": "news", "news": {"articles": [article]}}
        if msgtype == "text":
            return {"msgtype": "text", "text": {"content": content, "mentioned_list": [message.to]}}
        return {"msgtype": "markdown", "markdown": {"content": f"{content}\n<@{message.to}>"}}

    def send(self, message: OutboundMessage) -> Receipt:
        response = request(self._client, "POST", self._url, "WeCom robot", json=self.body(message))
        body = _answer(response, "WeCom robot")
        if body["errcode"] != 0:
            raise classify(body["errcode"], str(body.get("errmsg", "")), "WeCom robot")
        return Receipt(self.provider, None)


def _member_rates(settings: ChannelSettings) -> tuple[Rate, ...]:
    text = settings.wecom_member_rate_limit
    return parse_rates(text) if text else ()


def app_from_settings(settings: ChannelSettings) -> WeComApp:
    need = Required("JOURNEY_WECOM_PROVIDER=app")
    corp_id = need(settings.wecom_corp_id, "JOURNEY_WECOM_CORP_ID")
    secret = need(settings.wecom_secret, "JOURNEY_WECOM_SECRET")
    agent_id = need(settings.wecom_agent_id, "JOURNEY_WECOM_AGENT_ID")
    need.check()
    return WeComApp(
        corp_id,
        secret.get_secret_value(),
        agent_id,
        settings.wecom_base_url,
        settings.send_timeout,
        _member_rates(settings),
    )


def robot_from_settings(settings: ChannelSettings) -> WeComRobot:
    need = Required("JOURNEY_WECOM_PROVIDER=robot")
    url = need(settings.wecom_robot_url, "JOURNEY_WECOM_ROBOT_URL")
    need.check()
    return WeComRobot(url.get_secret_value(), settings.send_timeout)
