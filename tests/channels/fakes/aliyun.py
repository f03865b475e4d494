"""A Dysmsapi ``SendSms`` endpoint that checks requests the way Aliyun does.

The signature is recomputed independently of the engine's code, after Aliyun's own
sample (``quote`` everything, then ``+``→``%20``, ``*``→``%2A``, ``%7E``→``~``), over the
parameters as received; timestamps older than 15 minutes and reused nonces are refused;
sign names, templates, template variables and numbers are validated, and the carriers'
per-number minute limit answers ``isv.BUSINESS_LIMIT_CONTROL``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

from tests.channels.fakes.http import Reply, Request

MAINLAND = re.compile(r"^(?:\+?86|0086)?1[3-9]\d{9}$")
INTERNATIONAL = re.compile(r"^[1-9]\d{7,14}$")


def aliyun_quote(value: str) -> str:
    return quote(value, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def expected_signature(params: dict[str, str], secret: str, method: str) -> str:
    pairs = sorted((aliyun_quote(k), aliyun_quote(v)) for k, v in params.items())
    canonical = "&".join(f"{k}={v}" for k, v in pairs)
    string_to_sign = method + "&" + aliyun_quote("/") + "&" + aliyun_quote(canonical)
    mac = hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


@dataclass
class Sent:
    phone: str
    sign_name: str
    template: str
    params: dict[str, str]
    out_id: str | None
    biz_id: str


@dataclass
class AliyunFake:
    keys: dict[str, str] = field(default_factory=lambda: {"LTAI-test": "secret-test"})
    signs: set[str] = field(default_factory=lambda: {"悦品商城"})
    templates: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"SMS_100": ("code",), "SMS_200": ()}
    )
    per_number_per_minute: int | None = None
    sent: list[Sent] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    outage_reply = Reply(
        503,
        {
            "Code": "ServiceUnavailable",
            "Message": "The request has failed due to a temporary failure of the server.",
        },
    )

    def _error(self, status: int, code: str, message: str) -> Reply:
        body = {
            "RequestId": str(uuid.uuid4()),
            "HostId": "dysmsapi.aliyuncs.com",
            "Code": code,
            "Message": message,
        }
        return Reply(status, body)

    def __call__(self, request: Request) -> Reply:
        params = request.form() if request.method == "POST" else dict(request.query)
        for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp", "Action"):
            if name not in params:
                return self._error(400, f"Missing{name}", f"{name} is mandatory for this action.")
        signature = params.pop("Signature")
        secret = self.keys.get(params["AccessKeyId"])
        if secret is None:
            return self._error(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            return self._error(
                400, "InvalidSignatureMethod", "Specified signature method is not valid."
            )
        if not hmac.compare_digest(signature, expected_signature(params, secret, request.method)):
            return self._error(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
            )
        stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if abs((datetime.now(UTC) - stamp).total_seconds()) > 900:
            return self._error(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        if params["SignatureNonce"] in self.nonces:
            return self._error(
                400, "SignatureNonceUsed", "Specified signature nonce was used already."
            )
        self.nonces.add(params["SignatureNonce"])
        if params["Action"] != "SendSms" or params.get("Version") != "2017-05-25":
            return self._error(404, "InvalidAction.NotFound", "Specified api is not found.")
        return self._send_sms(params)

    def _send_sms(self, params: dict[str, str]) -> Reply:
        ok = {"RequestId": str(uuid.uuid4())}
        phone = params.get("PhoneNumbers", "")
        if not (MAINLAND.match(phone) or INTERNATIONAL.match(phone)):
            return Reply(
                200, {**ok, "Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": f"{phone}invalid"}
            )
        if params.get("SignName") not in self.signs:
            return Reply(
                200,
                {**ok, "Code": "isv.SMS_SIGNATURE_ILLEGAL", "Message": "该账号下找不到对应签名"},
            )
        template = params.get("TemplateCode", "")
        if template not in self.templates:
            return Reply(
                200, {**ok, "Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "该账号下找不到对应模板"}
            )
        try:
            variables = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            variables = None
        if not isinstance(variables, dict) or not all(
            isinstance(v, str) for v in variables.values()
        ):
            return Reply(
                200,
                {
                    **ok,
                    "Code": "isv.INVALID_JSON_PARAM",
                    "Message": "JSON参数不合法，只接受字符串值",
                },
            )
        if any(name not in variables for name in self.templates[template]):
            return Reply(
                200,
                {
                    **ok,
                    "Code": "isv.TEMPLATE_MISSING_PARAMETERS",
                    "Message": "模板变量缺少对应参数值",
                },
            )
        if self.per_number_per_minute is not None:
            already = sum(1 for s in self.sent if s.phone == phone)
            if already >= self.per_number_per_minute:
                return Reply(
                    200,
                    {
                        **ok,
                        "Code": "isv.BUSINESS_LIMIT_CONTROL",
                        "Message": f"触发分钟级流控Permits:{self.per_number_per_minute}",
                    },
                )
        biz_id = f"{len(self.sent) + 1:06d}^0"
        self.sent.append(
            Sent(phone, params["SignName"], template, variables, params.get("OutId"), biz_id)
        )
        return Reply(200, {**ok, "Code": "OK", "Message": "OK", "BizId": biz_id})
