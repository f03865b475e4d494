"""``/unsubscribe/{message_id}``: the link in every email (no auth: the id is the ticket).

It turns into an ``identify`` with ``traits.subscriptions.<channel> = false`` for the
message's user, stored through the same ingest path as any tracked event, with the
message id ``unsubscribe-<message_id>`` so a second click changes nothing. GET is the
link; POST is the RFC 8058 one-click (``List-Unsubscribe-Post``) form of the same.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from engine.api.segment import ApiError, log
from engine.identity import ANONYMOUS_PREFIX, USER_PREFIX
from engine.store.database import Database
from engine.store.ingest import Ingestor
from engine.store.schema import Message

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title_en} / {title_zh}</title>
<style>
body {{ font-family: system-ui, -apple-system, "PingFang SC", "Microsoft YaHei", sans-serif;
       max-width: 32rem; margin: 4rem auto; padding: 0 1rem; color: #222; text-align: center; }}
h1 {{ font-size: 1.4rem; margin: 0.3rem 0; }}
p {{ color: #555; }}
</style>
</head>
<body>
<h1>{title_en}</h1>
<h1 lang="zh-CN">{title_zh}</h1>
<p>{text_en}</p>
<p lang="zh-CN">{text_zh}</p>
</body>
</html>
"""

DONE = PAGE.format(
    title_en="You are unsubscribed",
    title_zh="您已退订",
    text_en="You will no longer receive these messages.",
    text_zh="您将不再收到此类消息。",
)
UNKNOWN = PAGE.format(
    title_en="This link is not valid",
    title_zh="此链接无效",
    text_en="We could not find the message this link belongs to.",
    text_zh="找不到此链接对应的消息。",
)
FAILED = PAGE.format(
    title_en="Please try again later",
    title_zh="请稍后再试",
    text_en="We could not process your request just now.",
    text_zh="暂时无法处理您的请求。",
)


def unsubscribe_message(message: Message) -> dict[str, Any] | None:
    """The synthetic identify for ``message``'s user, or None for an unknown key shape."""
    who: dict[str, str]
    if message.user_key.startswith(USER_PREFIX):
        who = {"userId": message.user_key.removeprefix(USER_PREFIX)}
    elif message.user_key.startswith(ANONYMOUS_PREFIX):
        who = {"anonymousId": message.user_key.removeprefix(ANONYMOUS_PREFIX)}
    else:
        return None
    return {
        "type": "identify",
        **who,
        "traits": {"subscriptions": {message.channel: False}},
        "messageId": f"unsubscribe-{message.message_id}",
        "context": {"source": "unsubscribe", "unsubscribe": {"message_id": message.message_id}},
    }


def router(db: Database, ingestor: Ingestor) -> APIRouter:
    api = APIRouter(tags=["unsubscribe"])

    def unsubscribe(message_id: str) -> bool:
        with db.transaction() as session:
            message = session.get(Message, message_id)
            identify = unsubscribe_message(message) if message is not None else None
        if identify is None:
            return False
        result = ingestor.ingest([identify])
        if result.rejected:  # an id too long or empty for a Segment message
            log.error("unsubscribe: message %s gave an invalid identify", message_id)
            raise ApiError(500, "internal", "could not record the unsubscribe")
        log.info("unsubscribe: message %s (stored=%d)", message_id, result.stored)
        return True

    async def endpoint(message_id: str) -> HTMLResponse:
        try:
            found = await run_in_threadpool(unsubscribe, message_id)
        except (SQLAlchemyError, ApiError) as exc:
            log.error("unsubscribe: failed: %s", type(exc).__name__)
            return HTMLResponse(FAILED, status_code=503)
        if not found:
            return HTMLResponse(UNKNOWN, status_code=404)
        return HTMLResponse(DONE, status_code=200)

    api.add_api_route(
        "/unsubscribe/{message_id}",
        endpoint,
        methods=["GET", "POST"],
        response_class=HTMLResponse,
        summary="Unsubscribe the message's user from the message's channel",
    )
    return api
