"""App push through Firebase Cloud Messaging's HTTP v1 API.

Authorisation is OAuth2 for a service account: a JWT (RS256, signed with the key file's
``private_key``, ``kid`` its ``private_key_id``) asserting ``iss`` = ``client_email``,
``scope`` = firebase.messaging, ``aud`` = the key file's ``token_uri``, valid one hour, is
exchanged at ``token_uri`` (grant type ``jwt-bearer``) for an access token, cached until
shortly before it expires. ``JOURNEY_FCM_SERVICE_ACCOUNT`` is the key file's path (or
its JSON).

``POST {JOURNEY_FCM_BASE_URL}/v1/projects/{project_id}/messages:send`` with ``token``
(the ``push_token`` trait), ``notification`` (``title``, ``body``), ``data``
(``message_id``, and ``url`` when given) and, for the web, ``fcm_options.link`` for an
HTTPS ``url``. The answer's ``name`` is the provider's message id.

Idempotency: FCM takes no key. The message id is set as the notification ``tag``
(Android, web) and ``apns-collapse-id`` (iOS), so a repeated delivery replaces the shown
notification instead of adding a second one.

Errors (``error.details[].errorCode``): ``UNREGISTERED`` (404), and ``INVALID_ARGUMENT``
about ``message.token``, mean the token is dead: :class:`~engine.errors.InvalidAddress`
with ``clear`` so the engine forgets the user's ``push_token``. ``SENDER_ID_MISMATCH``
is a bad address for this project; ``QUOTA_EXCEEDED`` throttling; ``UNAVAILABLE`` and
``INTERNAL`` transient (both after ``Retry-After``); ``THIRD_PARTY_AUTH_ERROR`` (APNs or
web push credentials), a refused assertion or a 403 are credential errors. A 401 drops
the cached access token and tries once more.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt

from engine.channels.http import (
    json_object,
    make_client,
    request,
    retry_after,
    status_error,
)
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

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
KEY_FIELDS = ("project_id", "private_key", "client_email", "token_uri")


def load_service_account(value: str) -> dict[str, Any]:
    """The service-account key from a file path, or from the JSON itself."""
    text = value.strip()
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text()
        except OSError as exc:
            raise ConfigurationError(
                "JOURNEY_FCM_SERVICE_ACCOUNT", f"cannot read the key file: {exc.strerror}"
            ) from None
    try:
        key = json.loads(text)
    except ValueError:
        raise ConfigurationError("JOURNEY_FCM_SERVICE_ACCOUNT", "the key is not JSON") from None
    missing = [field for field in KEY_FIELDS if not isinstance(key, dict) or not key.get(field)]
    if missing:
        raise ConfigurationError(
            "JOURNEY_FCM_SERVICE_ACCOUNT",
            f"not a service-account key: no {', '.join(missing)}",
        )
    return dict(key)


def _fcm_error(body: Mapping[str, Any] | None) -> tuple[str, str, bool]:
    """(FCM error code, message, whether a field violation names message.token)."""
    error = body.get("error") if body else None
    if not isinstance(error, dict):
        return "", "", False
    code, token_field = str(error.get("status", "")), False
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if str(detail.get("@type", "")).endswith("google.firebase.fcm.v1.FcmError"):
            code = str(detail.get("errorCode") or code)
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                token_field = True
    return code, str(error.get("message", "")), token_field


def classify(response: httpx.Response, body: Mapping[str, Any] | None) -> DeliveryError:
    """The error for a refused ``messages:send``."""
    code, text, token_field = _fcm_error(body)
    what = f"FCM {code or response.status_code}: {text}".rstrip(": ")
    if code == "UNREGISTERED" or (code == "INVALID_ARGUMENT" and token_field):
        return InvalidAddress(what, trait="push_token", clear=True)
    if code == "SENDER_ID_MISMATCH":
        return InvalidAddress(what, trait="push_token")
    if code in ("QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED") or response.status_code == 429:
        return ProviderThrottled(what, retry_after=retry_after(response) or 60.0)
    if code in ("UNAVAILABLE", "INTERNAL") or response.status_code >= 500:
        return TransientDeliveryError(what, retry_after=retry_after(response))
    if code in ("THIRD_PARTY_AUTH_ERROR", "PERMISSION_DENIED", "UNAUTHENTICATED"):
        return CredentialError(what)
    if code:
        return PermanentDeliveryError(what)
    return status_error(response, "FCM")


class FcmPush:
    """Sends notifications to app instances of one Firebase project."""

    provider = "fcm"

    def __init__(
        self,
        service_account: Mapping[str, Any],
        base_url: str = "https://fcm.googleapis.com",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = str(service_account["project_id"])
        self._key = service_account
        self._url = f"{base_url.rstrip('/')}/v1/projects/{self.account}/messages:send"
        self._client = make_client(timeout, transport)
        self._clock = clock
        self.tokens = TokenCache(self._fetch_token)

    def close(self) -> None:
        self._client.close()

    def assertion(self) -> str:
        """The signed JWT that asks ``token_uri`` for an access token."""
        now = int(self._clock())
        claims = {
            "iss": self._key["client_email"],
            "scope": SCOPE,
            "aud": self._key["token_uri"],
            "iat": now,
            "exp": now + 3600,
        }
        headers = {"kid": self._key["private_key_id"]} if self._key.get("private_key_id") else {}
        try:
            return jwt.encode(claims, self._key["private_key"], algorithm="RS256", headers=headers)
        except (ValueError, TypeError) as exc:
            raise CredentialError(f"FCM service-account private key unusable: {exc}") from None

    def _fetch_token(self) -> tuple[str, float]:
        response = request(
            self._client,
            "POST",
            str(self._key["token_uri"]),
            "FCM token",
            data={"grant_type": GRANT_TYPE, "assertion": self.assertion()},
        )
        body = json_object(response)
        if response.status_code == 200 and body and body.get("access_token"):
            return str(body["access_token"]), float(body.get("expires_in", 3600))
        if response.status_code in (400, 401, 403) and body and body.get("error"):
            detail = body.get("error_description") or ""
            raise CredentialError(f"FCM token refused: {body['error']} {detail}".strip())
        raise status_error(response, "FCM token")

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        url = message.content.get("url")
        data = {"message_id": message.message_id}
        if url:
            data["url"] = url
        fcm: dict[str, Any] = {
            "token": message.to,
            "notification": {
                "title": message.content.get("title", ""),
                "body": message.content.get("body", ""),
            },
            "data": data,
            "android": {"notification": {"tag": message.message_id}},
            "apns": {"headers": {"apns-collapse-id": message.message_id[:64]}},
            "webpush": {"notification": {"tag": message.message_id}},
        }
        if url and url.startswith("https://"):
            fcm["webpush"]["fcm_options"] = {"link": url}
        return {"message": fcm}

    def send(self, message: OutboundMessage) -> Receipt:
        payload = self.body(message)
        for attempt in (1, 2):
            token = self.tokens.get()
            response = request(
                self._client,
                "POST",
                self._url,
                "FCM send",
                json=payload,
                headers={"Authorization": f"Bearer {token}"},
            )
            body = json_object(response)
            if response.status_code == 200 and body and body.get("name"):
                return Receipt(self.provider, str(body["name"]))
            code, _, _ = _fcm_error(body)
            if response.status_code == 401 and code in ("", "UNAUTHENTICATED") and attempt == 1:
                self.tokens.invalidate(token)
                continue
            raise classify(response, body)
        raise CredentialError("FCM refused a freshly fetched access token")


def from_settings(settings: ChannelSettings) -> FcmPush:
    need = Required("JOURNEY_PUSH_PROVIDER=fcm")
    key = need(settings.fcm_service_account, "JOURNEY_FCM_SERVICE_ACCOUNT")
    need.check()
    return FcmPush(
        load_service_account(key.get_secret_value()),
        settings.fcm_base_url,
        settings.send_timeout,
    )
