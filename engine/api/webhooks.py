"""Webhooks providers call: delivery reports and SMS replies.

Every webhook proves where it comes from, as its provider allows:

- **Twilio** (``/webhooks/twilio/status``, ``/webhooks/twilio/inbound``): the
  ``X-Twilio-Signature`` header, HMAC-SHA1 with the account's auth token over the URL
  Twilio called (``JOURNEY_PUBLIC_URL`` + the path) and the form's fields sorted by name.
  Status callbacks report ``delivered``, ``undelivered`` and ``failed``; inbound messages
  carry replies (``STOP`` unsubscribes). Messages the engine sends ask for the callback.
- **Aliyun SMS** (``/webhooks/aliyun/{token}/report``, ``.../inbound``): Aliyun's HTTP
  batch push signs nothing, so its URL carries a token derived from
  ``JOURNEY_SECRET_KEY`` (``journey webhooks`` prints the URLs to configure). Bodies are
  JSON arrays of ``SmsReport`` (``out_id`` is our message id) and ``SmsUp`` (replies;
  ``T``, ``TD`` or ``退订`` unsubscribes); the answer is ``{"code": 0, "msg": "成功"}``.
- **Any other provider** (``/webhooks/reports``; email bounces and complaints, push and
  WeCom failures, relayed from whatever the provider offers): a JSON body
  ``{"reports": [{"message_id", "event": "delivered|failed|bounced|complaint",
  "permanent", "detail", "address"}]}``, signed in ``X-Journey-Signature: sha256=<hex>``,
  HMAC-SHA256 of the raw body with ``JOURNEY_SECRET_KEY``.

A webhook that fails its proof gets 403 and changes nothing; a malformed body 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from engine.api.segment import ApiError
from engine.metrics import count_outcomes
from engine.settings import Settings
from engine.store.database import Database, after_commit
from engine.store.optout import is_opt_out, opt_out
from engine.store.receipts import Outcome, Report, record_reports

T = TypeVar("T")
MAX_BODY = 1024 * 1024
#: Twilio errors that mean the number cannot receive SMS at all: the address is blocked.
TWILIO_GONE = frozenset({"21211", "21614", "30005", "30006"})
TWILIO_OUTCOMES: dict[str, Outcome] = {
    "delivered": "delivered",
    "undelivered": "failed",
    "failed": "failed",
}
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def twilio_signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    """What Twilio puts in ``X-Twilio-Signature`` for a POST of ``form`` to ``url``."""
    data = url + "".join(name + form[name] for name in sorted(form))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def body_signature(secret_key: str, body: bytes) -> str:
    """What ``X-Journey-Signature`` must hold for ``body``."""
    return "sha256=" + hmac.new(secret_key.encode(), body, hashlib.sha256).hexdigest()


def webhook_token(secret_key: str, provider: str) -> str:
    """The token in the URL of a provider that signs nothing (Aliyun)."""
    mac = hmac.new(secret_key.encode(), f"webhook:{provider}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def webhook_urls(settings: Settings) -> dict[str, str]:
    """The URL to configure at each provider, by what it is for."""
    base = settings.public_url.rstrip("/")
    urls = {
        "twilio status callback": f"{base}/webhooks/twilio/status",
        "twilio incoming messages": f"{base}/webhooks/twilio/inbound",
        "other providers' reports (signed)": f"{base}/webhooks/reports",
    }
    if settings.secret_key is not None:
        token = webhook_token(settings.secret_key.get_secret_value(), "aliyun")
        urls["aliyun SmsReport"] = f"{base}/webhooks/aliyun/{token}/report"
        urls["aliyun SmsUp"] = f"{base}/webhooks/aliyun/{token}/inbound"
    return urls


class _Generic(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message_id: str = Field(min_length=1, max_length=64)
    event: Outcome
    permanent: bool = False
    detail: str = Field(default="", max_length=1000)
    address: str | None = Field(default=None, max_length=512)


class _GenericBody(BaseModel):
    reports: list[_Generic] = Field(max_length=1000)


class _AliyunReport(BaseModel):
    model_config = ConfigDict(extra="ignore")
    out_id: str | None = None
    biz_id: str | None = None
    success: bool
    err_code: str = ""
    err_msg: str = ""
    phone_number: str | None = None


class _AliyunReply(BaseModel):
    model_config = ConfigDict(extra="ignore")
    phone_number: str
    content: str = ""


def _forbidden() -> ApiError:
    return ApiError(403, "forbidden", "the webhook's signature does not match")


def _parse(parse: Callable[[], T]) -> T:
    try:
        return parse()
    except (ValidationError, ValueError) as exc:
        raise ApiError(400, "invalid_request", f"malformed webhook body: {exc}") from None


def router(db: Database, settings: Settings) -> APIRouter:
    api = APIRouter(tags=["webhooks"], include_in_schema=False)
    public = settings.public_url.rstrip("/")

    def now() -> datetime:
        return datetime.now(UTC)

    def apply(reports: list[Report]) -> int:
        with db.transaction() as session:
            outcomes: list[tuple[str, str, str | None]] = []
            changed = record_reports(session, reports, now(), outcomes)
            after_commit(session, lambda: count_outcomes(outcomes))
            return changed

    def replies(phones: list[str]) -> int:
        with db.transaction() as session:
            return sum(len(opt_out(session, phone, now())) for phone in phones)

    async def body_of(request: Request) -> bytes:
        body = await request.body()
        if len(body) > MAX_BODY:
            raise ApiError(413, "too_large", "a webhook body is at most 1 MB")
        return body

    async def twilio_form(request: Request) -> dict[str, str]:
        token = settings.twilio_auth_token
        body = await body_of(request)
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        expected = twilio_signature(
            token.get_secret_value() if token else "", public + request.url.path, form
        )
        given = request.headers.get("x-twilio-signature", "")
        if token is None or not hmac.compare_digest(expected, given):
            raise _forbidden()
        return form

    def aliyun_allowed(token: str) -> None:
        secret = settings.secret_key
        expected = webhook_token(secret.get_secret_value(), "aliyun") if secret else ""
        if secret is None or not hmac.compare_digest(expected, token):
            raise _forbidden()

    @api.post("/webhooks/twilio/status")
    async def twilio_status(request: Request) -> Response:
        form = await twilio_form(request)
        status = form.get("MessageStatus", "")
        outcome = TWILIO_OUTCOMES.get(status)
        if outcome is not None:
            code = form.get("ErrorCode", "")
            report = Report(
                outcome,
                provider="twilio",
                provider_message_id=form.get("MessageSid"),
                detail=f"Twilio {status}" + (f" ({code})" if code else ""),
                permanent=code in TWILIO_GONE,
                address=form.get("To") or None,
            )
            await run_in_threadpool(apply, [report])
        return Response(status_code=204)

    @api.post("/webhooks/twilio/inbound")
    async def twilio_inbound(request: Request) -> Response:
        form = await twilio_form(request)
        sender = form.get("From", "")
        if sender and (is_opt_out(form.get("Body", "")) or form.get("OptOutType") == "STOP"):
            await run_in_threadpool(replies, [sender])
        return Response(TWIML_EMPTY, media_type="application/xml")

    @api.post("/webhooks/aliyun/{token}/report")
    async def aliyun_report(token: str, request: Request) -> JSONResponse:
        aliyun_allowed(token)
        body = await body_of(request)
        items = _parse(lambda: [_AliyunReport.model_validate(i) for i in orjson.loads(body)])
        reports = [
            Report(
                "delivered" if item.success else "failed",
                message_id=item.out_id,
                provider="aliyun",
                provider_message_id=item.biz_id,
                detail="" if item.success else f"{item.err_code} {item.err_msg}".strip(),
                address=item.phone_number,
            )
            for item in items
        ]
        await run_in_threadpool(apply, reports)
        return JSONResponse({"code": 0, "msg": "成功"})

    @api.post("/webhooks/aliyun/{token}/inbound")
    async def aliyun_inbound(token: str, request: Request) -> JSONResponse:
        aliyun_allowed(token)
        body = await body_of(request)
        items = _parse(lambda: [_AliyunReply.model_validate(i) for i in orjson.loads(body)])
        phones = [item.phone_number for item in items if is_opt_out(item.content)]
        if phones:
            await run_in_threadpool(replies, phones)
        return JSONResponse({"code": 0, "msg": "成功"})

    @api.post("/webhooks/reports")
    async def signed_reports(request: Request) -> JSONResponse:
        body = await body_of(request)
        secret = settings.secret_key
        given = request.headers.get("x-journey-signature", "")
        if secret is None or not hmac.compare_digest(
            body_signature(secret.get_secret_value(), body), given
        ):
            raise _forbidden()
        parsed = _parse(lambda: _GenericBody.model_validate_json(body))
        reports = [
            Report(
                item.event,
                message_id=item.message_id,
                detail=item.detail,
                permanent=item.permanent,
                address=item.address,
            )
            for item in parsed.reports
        ]
        changed = await run_in_threadpool(apply, reports)
        return JSONResponse({"received": len(reports), "changed": changed})

    return api
