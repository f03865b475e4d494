"""Twilio Programmable Messaging: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``.

HTTP Basic auth with the account SID and auth token; a form body of ``To``, ``Body`` and
``From`` (a number or sender id), or ``MessagingServiceSid`` when ``JOURNEY_TWILIO_FROM``
names a messaging service (``MG...``). A ``201`` carries the message ``sid`` and
``num_segments`` (``0`` until a messaging service picks a sender; then the count is ours).

Idempotency: Twilio's Messages API takes no idempotency key, so a retry after an
ambiguous timeout may send twice; the message id travels nowhere.

Errors come as ``{"code", "message", "more_info", "status"}``: 21211 (invalid ``To``) and
21614 (not a mobile number) are bad addresses; 21610 (the recipient replied STOP) and the
other 4xx are permanent; 20003 / HTTP 401 and invalid ``From`` numbers (21212, 21606,
21659) are credential errors that hold the channel; 429 / 20429 is throttling and 5xx
transient, both after ``Retry-After``.
"""

from __future__ import annotations

import httpx

from engine.channels.http import (
    json_object,
    make_client,
    redact,
    request,
    retry_after,
    status_error,
)
from engine.channels.segments import count_segments
from engine.channels.senders import OutboundMessage, Receipt
from engine.channels.settings import ChannelSettings, Required
from engine.errors import (
    CredentialError,
    DeliveryError,
    InvalidAddress,
    PermanentDeliveryError,
    ProviderThrottled,
    TransientDeliveryError,
)

ADDRESS_CODES = frozenset({21211, 21614})
CREDENTIAL_CODES = frozenset({20003, 20404, 21212, 21606, 21659})


class TwilioSms:
    """Sends SMS through Twilio's Messages resource."""

    provider = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sender: str,
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        status_callback: str | None = None,
    ) -> None:
        self.account = account_sid
        self._status_callback = status_callback
        self._auth = (account_sid, auth_token)
        self._sender = sender
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._client = make_client(timeout, transport)

    def close(self) -> None:
        self._client.close()

    def form(self, message: OutboundMessage) -> dict[str, str]:
        form = {"To": message.to, "Body": message.content.get("text", "")}
        if self._sender.startswith("MG"):
            form["MessagingServiceSid"] = self._sender
        else:
            form["From"] = self._sender
        if self._status_callback:  # delivery reports: engine.api.webhooks
            form["StatusCallback"] = self._status_callback
        return form

    def send(self, message: OutboundMessage) -> Receipt:
        response = request(
            self._client, "POST", self._url, "Twilio", data=self.form(message), auth=self._auth
        )
        body = json_object(response)
        if response.status_code in (200, 201) and body is not None and body.get("sid"):
            counted = count_segments(message.content.get("text", "")).segments
            reported = str(body.get("num_segments") or "0")
            segments = int(reported) if reported.isdigit() and int(reported) > 0 else counted
            return Receipt(self.provider, str(body["sid"]), segments)
        code = body.get("code") if body else None
        if not isinstance(code, int):
            raise status_error(response, "Twilio")
        text = redact(str(body.get("message", "")) if body else "", message.to)
        raise classify(code, text, response)


def classify(code: int, text: str, response: httpx.Response) -> DeliveryError:
    """The error for a Twilio error ``code`` (HTTP status in ``response``)."""
    what = f"Twilio {code}: {text}"
    if code == 20429 or response.status_code == 429:
        return ProviderThrottled(what, retry_after=retry_after(response))
    if response.status_code >= 500:
        return TransientDeliveryError(what, retry_after=retry_after(response))
    if code in CREDENTIAL_CODES or response.status_code == 401:
        return CredentialError(what)
    if code in ADDRESS_CODES:
        return InvalidAddress(what, trait="phone")
    return PermanentDeliveryError(what)


def from_settings(settings: ChannelSettings) -> TwilioSms:
    need = Required("JOURNEY_SMS_PROVIDER=twilio")
    sid = need(settings.twilio_account_sid, "JOURNEY_TWILIO_ACCOUNT_SID")
    token = need(settings.twilio_auth_token, "JOURNEY_TWILIO_AUTH_TOKEN")
    sender = need(settings.twilio_from, "JOURNEY_TWILIO_FROM")
    need.check()
    public_url = getattr(settings, "public_url", None)  # the engine's settings have one
    return TwilioSms(
        sid,
        token.get_secret_value(),
        sender,
        settings.twilio_base_url,
        settings.send_timeout,
        status_callback=f"{public_url.rstrip('/')}/webhooks/twilio/status" if public_url else None,
    )
