"""Aliyun SMS (Dysmsapi ``SendSms``, version 2017-05-25), RPC style with a signed request.

Aliyun sends approved templates only: the SMS template gives the approved template code
in its ``template_code`` part and the variables as a JSON object in ``template_param``
(``{"code": "{{ coupon }}"}``); the ``text`` part is what the user will read, used to
count segments. The sign name comes from ``JOURNEY_ALIYUN_SMS_SIGN_NAME``.

Signing (signature version 1.0, HMAC-SHA1): every parameter but ``Signature``, sorted by
name, names and values percent-encoded per RFC 3986 (only ``A-Z a-z 0-9 - _ . ~`` left
as they are, space as ``%20``), joined as ``k=v`` with ``&``; the string to sign is
``POST&%2F&`` + the percent-encoded query; the key is the AccessKey secret plus ``&``;
the signature is the base64 of the HMAC. A fresh ``SignatureNonce`` per request.

Idempotency: SendSms has none (Aliyun's own documentation says so). The message id goes
in ``OutId``, which Aliyun returns in delivery reports, so a report finds its message.

Errors: ``isv.MOBILE_NUMBER_ILLEGAL`` is a bad number (permanent); template problems
(``isv.SMS_TEMPLATE_ILLEGAL``, missing or bad parameters, blacklisted words) are
permanent; ``isv.BUSINESS_LIMIT_CONTROL`` is the carrier-imposed limit per number:
minute- and hour-level ones are throttling retried after that long, the day-level one is
permanent (the send falls back). Bad keys, signatures, sign names, a suspended account
or no balance are credential errors that hold the channel; ``isp.SYSTEM_ERROR``,
``Throttling*`` and 5xx are transient.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from engine.channels.http import json_object, make_client, redact, request, status_error
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

API_VERSION = "2017-05-25"
REGION = "cn-hangzhou"

CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidTimeStamp.Expired",
        "Forbidden.RAM",
        "isp.RAM_PERMISSION_DENY",
        "isv.ACCOUNT_NOT_EXISTS",
        "isv.ACCOUNT_ABNORMAL",
        "isv.PRODUCT_UN_SUBSCRIPT",
        "isv.PRODUCT_UNSUBSCRIBE",
        "isv.OUT_OF_SERVICE",
        "isv.AMOUNT_NOT_ENOUGH",
        "isv.SMS_SIGNATURE_ILLEGAL",
        "isv.SMS_SIGN_ILLEGAL",
        "isv.SMS_SIGN_NAME_ILLEGAL",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "isp.SYSTEM_ERROR",
        "isp.GATEWAY_ERROR",
        "isp.UNKNOWN",
        "InternalError",
        "ServiceUnavailable",
        "SignatureNonceUsed",
    }
)
ADDRESS_CODES = frozenset({"isv.MOBILE_NUMBER_ILLEGAL"})


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun signs it (``~`` kept, space as ``%20``)."""
    return quote(value, safe="-_.~")


def sign(params: Mapping[str, str], secret: str, method: str = "POST") -> str:
    """The ``Signature`` of an RPC request with these parameters."""
    canonical = "&".join(
        f"{percent_encode(key)}={percent_encode(params[key])}" for key in sorted(params)
    )
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def phone_number(to: str) -> str:
    """The number as Aliyun takes it: digits, country code first, no ``+``."""
    digits = re.sub(r"[\s\-()]", "", to)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    return digits


def is_mainland(number: str) -> bool:
    return number.startswith("86") or (len(number) == 11 and number.startswith("1"))


def template_param(raw: str | None) -> str | None:
    """The ``template_param`` part as Aliyun wants it: a JSON object of strings."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PermanentDeliveryError(f"template_param is not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise PermanentDeliveryError("template_param must be a JSON object")
    as_text = {
        str(key): (item if isinstance(item, str) else json.dumps(item, ensure_ascii=False))
        for key, item in value.items()
    }
    return json.dumps(as_text, ensure_ascii=False, separators=(",", ":"))


class AliyunSms:
    """Sends SMS through Aliyun's ``SendSms``."""

    provider = "aliyun"

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        endpoint: str = "https://dysmsapi.aliyuncs.com",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.account = access_key_id
        self._secret = access_key_secret
        self._sign_name = sign_name
        self._endpoint = endpoint.rstrip("/") + "/"
        self._client = make_client(timeout, transport)
        self._clock = clock

    def close(self) -> None:
        self._client.close()

    def params(self, message: OutboundMessage) -> dict[str, str]:
        """The signed request parameters for ``message``."""
        code = (message.content.get("template_code") or "").strip()
        if not code:
            raise PermanentDeliveryError(
                "Aliyun SMS sends approved templates only: the SMS template needs a "
                "template_code part (the SMS_... code of the approved template)"
            )
        params = {
            "AccessKeyId": self.account,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": REGION,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
            "PhoneNumbers": phone_number(message.to),
            "SignName": self._sign_name,
            "TemplateCode": code,
            "OutId": message.message_id,
        }
        param = template_param(message.content.get("template_param"))
        if param is not None:
            params["TemplateParam"] = param
        params["Signature"] = sign(params, self._secret)
        return params

    def segments(self, message: OutboundMessage) -> int:
        text = message.content.get("text", "")
        signed = text if text.startswith("【") else f"【{self._sign_name}】{text}"
        return count_segments(signed, ucs2=is_mainland(phone_number(message.to))).segments

    def send(self, message: OutboundMessage) -> Receipt:
        params = self.params(message)
        response = request(self._client, "POST", self._endpoint, "Aliyun SendSms", data=params)
        body = json_object(response)
        code = str(body.get("Code", "")) if body else ""
        if response.status_code == 200 and code == "OK" and body is not None:
            biz_id = body.get("BizId")
            return Receipt(self.provider, str(biz_id) if biz_id else None, self.segments(message))
        if not code:
            raise status_error(response, "Aliyun SendSms")
        said = str(body.get("Message", "")) if body else ""
        text = redact(said, message.to, params["PhoneNumbers"])
        raise classify(code, text, response.status_code)


def classify(code: str, text: str, status: int) -> DeliveryError:
    """The error for an Aliyun ``Code`` other than ``OK``."""
    what = f"Aliyun {code}: {text}".rstrip(": ")
    if code == "isv.BUSINESS_LIMIT_CONTROL":
        # The per-number limit carriers impose; its message says which window was hit.
        if "天级" in text or "day" in text.lower():
            return PermanentDeliveryError(what)
        hourly = "小时级" in text or "hour" in text.lower()
        return ProviderThrottled(what, retry_after=3600.0 if hourly else 60.0)
    if code.startswith("Throttling"):
        return ProviderThrottled(what, retry_after=1.0)
    if code in CREDENTIAL_CODES:
        return CredentialError(what)
    if code in ADDRESS_CODES:
        return InvalidAddress(what, trait="phone")
    if code in TRANSIENT_CODES or status >= 500:
        return TransientDeliveryError(what)
    return PermanentDeliveryError(what)


def from_settings(settings: ChannelSettings) -> AliyunSms:
    need = Required("JOURNEY_SMS_PROVIDER=aliyun")
    key_id = need(settings.aliyun_access_key_id, "JOURNEY_ALIYUN_ACCESS_KEY_ID")
    secret = need(settings.aliyun_access_key_secret, "JOURNEY_ALIYUN_ACCESS_KEY_SECRET")
    sign_name = need(settings.aliyun_sms_sign_name, "JOURNEY_ALIYUN_SMS_SIGN_NAME")
    need.check()
    return AliyunSms(
        key_id,
        secret.get_secret_value(),
        sign_name,
        settings.aliyun_sms_endpoint,
        settings.send_timeout,
    )
