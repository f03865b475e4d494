"""``/unsubscribe/{token}``: the signed link in every message (no auth: the signature is
the ticket; see ``engine.signed_links``).

GET only shows a page, so mail scanners that follow links unsubscribe no one: it asks to
confirm, or says the user is already unsubscribed. POST acts: the page's button, and the
RFC 8058 one-click POST mail clients send (``List-Unsubscribe=One-Click`` in the body,
answered 200). The unsubscribe is recorded as a consent change (``engine.store.consent``)
and the answer says what happened: unsubscribed now, or already unsubscribed. A link that
was not signed with ``JOURNEY_SECRET_KEY`` (tampered, truncated, or the old unsigned form)
is refused with 404, as is every link when no key is configured.

Pages are in the user's language: the profile's ``locale`` (``zh*`` is Chinese), else the
browser's ``Accept-Language``, else English.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from engine.api.segment import TEMPORARY, ApiError, log, read_body
from engine.rendering import locale_chain
from engine.settings import Settings
from engine.signed_links import UnsubscribeLink, read_unsubscribe_token
from engine.store.consent import read_consent, unsubscribe
from engine.store.database import Database

Language = Literal["en", "zh-CN"]
ONE_CLICK = b"List-Unsubscribe=One-Click"

CHANNEL_NAMES: dict[Language, dict[str, str]] = {
    "en": {
        "email": "emails",
        "sms": "text messages",
        "push": "push notifications",
        "wecom": "WeCom messages",
    },
    "zh-CN": {"email": "邮件", "sms": "短信", "push": "推送通知", "wecom": "企业微信消息"},
}

TEXTS: dict[Language, dict[str, tuple[str, str]]] = {
    "en": {
        "confirm": ("Unsubscribe?", "You will no longer receive {channel} from us."),
        "done": ("You are unsubscribed", "You will no longer receive {channel} from us."),
        "already": ("You are already unsubscribed", "You do not receive {channel} from us."),
        "invalid": ("This link is not valid", "Please use the link in the message exactly."),
        "failed": ("Please try again later", "We could not process your request just now."),
    },
    "zh-CN": {
        "confirm": ("确认退订？", "退订后您将不再收到我们的{channel}。"),
        "done": ("您已退订", "您将不再收到我们的{channel}。"),
        "already": ("您已退订过", "您目前不会收到我们的{channel}。"),
        "invalid": ("此链接无效", "请使用消息中的完整链接。"),
        "failed": ("请稍后再试", "暂时无法处理您的请求。"),
    },
}
BUTTON: dict[Language, str] = {"en": "Unsubscribe", "zh-CN": "确认退订"}

PAGE = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "PingFang SC", "Microsoft YaHei", sans-serif;
       max-width: 32rem; margin: 4rem auto; padding: 0 1rem; color: #222; text-align: center; }}
h1 {{ font-size: 1.4rem; margin: 0.3rem 0; }}
p {{ color: #555; }}
button {{ font: inherit; padding: 0.6rem 1.6rem; border: 0; border-radius: 4px;
          background: #222; color: #fff; cursor: pointer; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{text}</p>
{form}</body>
</html>
"""
FORM = """<form method="post">
<input type="hidden" name="confirm" value="yes">
<button type="submit">{button}</button>
</form>
"""


def page(state: str, language: Language, channel: str = "", status: int = 200) -> HTMLResponse:
    title, text = TEXTS[language][state]
    name = CHANNEL_NAMES[language].get(channel, channel)
    form = FORM.format(button=BUTTON[language]) if state == "confirm" else ""
    body = PAGE.format(
        lang=language,
        title=html.escape(title),
        text=html.escape(text.format(channel=name)),
        form=form,
    )
    # Never cached: the answer depends on the user's consent at the time.
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def language_of(locale: object, accept_language: str | None) -> Language:
    """The profile's locale decides; without one, the browser's first preference."""
    chain = locale_chain(locale)
    if chain:
        return "zh-CN" if chain[-1].lower() == "zh" else "en"
    preferred = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        preferred.append((-quality, index, tag.strip().lower()))
    for _quality, _index, tag in sorted(preferred):
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en") or tag == "*":
            return "en"
    return "en"


#: What a request did: the profile's locale (for the page's language) and the page to show.
Done = tuple[object, str]


def router(db: Database, settings: Settings) -> APIRouter:
    api = APIRouter(tags=["unsubscribe"])

    def look(link: UnsubscribeLink) -> Done:
        with db.transaction() as session:
            consent = read_consent(session, link.user_key, link.channel)
        return consent.locale, "already" if consent.unsubscribed else "confirm"

    def act(link: UnsubscribeLink, source: str) -> Done:
        with db.transaction() as session:
            before, changed = unsubscribe(
                session,
                link.user_key,
                link.channel,
                source=source,
                message_id=link.message_id,
                now=datetime.now(UTC),
            )
        log.info(
            "unsubscribe: message %s channel %s %s (%s)",
            link.message_id,
            link.channel,
            "done" if changed else "already unsubscribed",
            source,
        )
        return before.locale, "done" if changed else "already"

    async def answer(
        token: str, request: Request, work: Callable[[UnsubscribeLink], Done]
    ) -> HTMLResponse:
        accept = request.headers.get("accept-language")
        secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
        link = read_unsubscribe_token(secret, token)
        if link is None:
            return page("invalid", language_of(None, accept), status=404)
        try:
            locale, state = await run_in_threadpool(work, link)
        except TEMPORARY as exc:
            log.error("unsubscribe: the store is unavailable: %s", type(exc).__name__)
            return page("failed", language_of(None, accept), status=503)
        return page(state, language_of(locale, accept), link.channel)

    @api.get("/unsubscribe/{token}", response_class=HTMLResponse, summary="Confirm an unsubscribe")
    async def confirm(token: str, request: Request) -> HTMLResponse:
        """The page a link opens: asks to confirm (changes nothing)."""
        return await answer(token, request, look)

    @api.post("/unsubscribe/{token}", response_class=HTMLResponse, summary="Unsubscribe")
    async def confirmed(token: str, request: Request) -> HTMLResponse:
        """The page's button, or an RFC 8058 one-click POST: unsubscribes."""
        try:
            body = await read_body(request, 1024, "an unsubscribe request")
        except ApiError:
            body = b""  # the body only tells how the request was made
        source = "one_click" if ONE_CLICK in body else "unsubscribe_page"
        return await answer(token, request, lambda link: act(link, source))

    return api
