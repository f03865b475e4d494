"""Twilio's Messages resource: Basic auth checked, Twilio's magic test numbers honoured.

``+15005550001`` is invalid (21211), ``+15005550009`` cannot receive SMS (21614),
``+15005550004`` has replied STOP (21610), as with Twilio's test credentials. A body
over 1600 characters is 21617. ``throttle`` answers 429 / 20429 with ``Retry-After``.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field

from tests.channels.fakes.http import Reply, Request

MAGIC = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
}


def error(status: int, code: int, message: str) -> Reply:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply(status, body)


@dataclass
class TwilioFake:
    account_sid: str = "AC" + "1" * 32
    auth_token: str = "token-test"
    numbers: set[str] = field(default_factory=lambda: {"+15005550006"})
    throttle: bool = False
    sent: list[dict[str, str]] = field(default_factory=list)
    outage_reply = error(503, 20503, "Service Unavailable")

    def __call__(self, request: Request) -> Reply:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return error(401, 20003, "Authenticate")
        if request.method != "POST" or request.path != (
            f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        ):
            return error(404, 20404, "The requested resource was not found")
        if self.throttle:
            reply = error(429, 20429, "Too Many Requests")
            reply.headers["Retry-After"] = "7"
            return reply
        form = request.form()
        to, body = form.get("To", ""), form.get("Body", "")
        if "MessagingServiceSid" not in form and form.get("From") not in self.numbers:
            return error(400, 21606, "The From phone number is not a valid, SMS-capable number")
        if not to.startswith("+") or not to[1:].isdigit():
            return error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in MAGIC:
            return error(400, *MAGIC[to])
        if len(body) > 1600:
            return error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit"
            )
        sid = "SM" + secrets.token_hex(16)
        self.sent.append({"sid": sid, **form})
        simple = all(ord(ch) < 128 for ch in body)
        single, part = (160, 153) if simple else (70, 67)
        segments = 1 if len(body) <= single else -(-len(body) // part)
        return Reply(
            201,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": to,
                "from": form.get("From"),
                "body": body,
                "status": "accepted" if "MessagingServiceSid" in form else "queued",
                "num_segments": "0" if "MessagingServiceSid" in form else str(segments),
                "error_code": None,
                "api_version": "2010-04-01",
            },
        )
