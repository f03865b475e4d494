"""The Segment HTTP tracking API, so existing Segment and RudderStack SDKs work unchanged.

``POST /v1/track|identify|page|screen|alias|group`` take one message (the path sets
``type`` when the body has none); ``POST /v1/batch`` (and its old name ``/v1/import``)
takes ``{"batch": [...], "context": ..., "integrations": ...}``, each item with its own
``type``; the batch-level ``context`` and ``integrations`` apply to every item (the item's
own keys win).

What the SDKs send (segment-analytics-python 2.x, rudder-sdk-python 2.x): ``POST
{host}/v1/batch``, ``Authorization: Basic base64("<writeKey>:")``, ``Content-Type:
application/json``; the Segment SDK also puts ``writeKey`` and ``sentAt`` in the body and
gzips only when asked, the RudderStack SDK gzips by default (``Content-Encoding: gzip``).
Both give up on a 4xx (except 408/429 and a few others) and retry a 5xx, so a database
failure answers 503; a bad message answers 400 and is not sent again. Both read ``code``
and ``message`` from an error body, so every error here carries them.

Every request is one transaction: the response is sent only after the accepted messages
are committed, then ``on_ingest`` wakes the consumer. Messages already stored (same
``messageId``) are duplicates: counted, not errors.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool

from engine.events import MESSAGE_TYPES
from engine.settings import Settings
from engine.store.ingest import KB, MAX_MESSAGE_BYTES, Ingestor

log = logging.getLogger("engine.api")

MAX_BATCH_BYTES = 500 * KB  # one batch request, decompressed (Segment's limit)
GZIP_TYPES = ("gzip", "x-gzip")


class ApiError(Exception):
    """An error answer: ``{"success": false, "code", "message", ...extra}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"success": False, "code": self.code, "message": self.message, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def too_large(limit: int, what: str) -> ApiError:
    return ApiError(413, "payload_too_large", f"{what} is over the {limit // KB} KB limit")


# --------------------------------------------------------------------------- HTTP


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic`` header, if it holds any."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic" or not credentials.strip():
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    # Headers arrive as Latin-1: "Basic \xff\xfe" is not base64 (ValueError), and
    # base64 of bytes that are not UTF-8 is no key either (UnicodeDecodeError).
    except (binascii.Error, ValueError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def basic_user(header: str | None) -> str | None:
    """The user name of an ``Authorization: Basic`` header (Segment's write key), if any."""
    credentials = basic_credentials(header)
    return credentials[0] if credentials else None


def basic_password(header: str | None) -> str | None:
    """The password of an ``Authorization: Basic`` header, if any."""
    credentials = basic_credentials(header)
    return credentials[1] if credentials and credentials[1] else None


def known_key(key: Any, keys: Iterable[str]) -> bool:
    if not isinstance(key, str) or not key:
        return False
    candidate = key.encode("utf-8", "surrogatepass")  # a body's key may hold "\ud800"
    found = False
    for known in keys:  # compare with every key: the time does not tell which one matched
        found |= hmac.compare_digest(candidate, known.encode())
    return found


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip ``data`` (all members), refusing more than ``limit`` bytes of output."""
    out = bytearray()
    while data:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += decompressor.decompress(data, limit + 1 - len(out))
        except zlib.error:
            raise ApiError(400, "invalid_gzip", "the body is not valid gzip") from None
        if len(out) > limit or decompressor.unconsumed_tail:
            raise too_large(limit, "the decompressed body")
        if not decompressor.eof:
            raise ApiError(400, "invalid_gzip", "the gzip body is truncated")
        data = decompressor.unused_data
    return bytes(out)


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, decompressed, at most ``limit`` bytes (413 beyond)."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", *GZIP_TYPES):
        raise ApiError(415, "unsupported_encoding", "Content-Encoding must be gzip or absent")
    gzipped = encoding in GZIP_TYPES
    # gzip never grows data by more than a few bytes per 16 KB block plus its header.
    raw_limit = limit + limit // 64 + 1024 if gzipped else limit
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > raw_limit:
        raise too_large(limit, what)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > raw_limit:
            raise too_large(limit, what)
    if gzipped:
        return gunzip(bytes(body), limit)
    return bytes(body)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """The JSON body. The standard library parses it: orjson would turn integers beyond
    64 bits (order numbers...) into floats. NaN and Infinity are not JSON."""
    if not body.strip():
        raise ApiError(400, "invalid_json", "the body is empty; expected a JSON object")
    try:
        return json.loads(body, parse_constant=_no_constants)
    except RecursionError:
        raise ApiError(400, "invalid_json", "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None


UNAUTHORIZED = {"WWW-Authenticate": 'Basic realm="journey"'}


async def _receive(request: Request, settings: Settings, limit: int, what: str) -> dict[str, Any]:
    """Authenticate and read one JSON object body. 401 / 413 / 400 / 415 as ApiError."""
    authorized = known_key(basic_user(request.headers.get("authorization")), settings.write_keys)
    try:
        body = parse_json(await read_body(request, limit, what))
    except ApiError as exc:
        if not authorized and exc.status == 400:
            # No write key to be read from a body that is not JSON.
            raise _unauthorized() from None
        raise
    if not authorized and not (
        isinstance(body, dict) and known_key(body.get("writeKey"), settings.write_keys)
    ):
        raise _unauthorized()
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "invalid_message",
            "the body must be a JSON object",
            extra={"field": ""},
        )
    return body


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "a valid write key is required (HTTP Basic auth, the write key as user name)",
        headers=UNAUTHORIZED,
    )


#: Database errors that pass: the store is down, busy or was restarted. Anything else the
#: database says about a request would be said again, so it must never answer "retry".
TEMPORARY = (OperationalError, InterfaceError, PoolTimeout, DisconnectionError)


async def _store(ingestor: Ingestor, items: list[Any], defaults: dict[str, Any]) -> JSONResponse:
    try:
        result = await run_in_threadpool(ingestor.ingest, items, defaults=defaults)
    except TEMPORARY as exc:
        log.error("ingest: database unavailable: %s", type(exc).__name__)
        raise ApiError(503, "unavailable", "the event store is unavailable; retry later") from None
    body = result.as_json()
    if not result.rejected_count:
        return JSONResponse(body, status_code=200)
    first = result.rejected[0]
    status = 413 if result.too_large else 400
    code = "payload_too_large" if status == 413 else "invalid_message"
    where = f"message {first.index}: " if result.received > 1 else ""
    summary = f"{result.rejected_count} of {result.received} messages rejected; "
    message = (summary if result.received > 1 else "") + where + first.error
    body.update({"code": code, "message": message, "field": first.field})
    return JSONResponse(body, status_code=status)


def router(ingestor: Ingestor, settings: Settings) -> APIRouter:
    api = APIRouter(tags=["tracking"])

    def single(kind: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            body = await _receive(request, settings, MAX_MESSAGE_BYTES, "a message")
            if body.get("type") is None:
                body["type"] = kind
            return await _store(ingestor, [body], {})

        endpoint.__name__ = f"segment_{kind}"
        return endpoint

    for kind in MESSAGE_TYPES:
        api.add_api_route(
            f"/v1/{kind}",
            single(kind),
            methods=["POST"],
            summary=f"One Segment {kind} message",
        )

    async def batch(request: Request) -> JSONResponse:
        body = await _receive(request, settings, MAX_BATCH_BYTES, "a batch")
        items = body.get("batch")
        if not isinstance(items, list):
            raise ApiError(
                400,
                "invalid_message",
                "batch: required, a list of messages",
                extra={"field": "batch"},
            )
        defaults = {
            key: body[key] for key in ("context", "integrations") if isinstance(body.get(key), dict)
        }
        return await _store(ingestor, items, defaults)

    for path in ("/v1/batch", "/v1/import"):
        api.add_api_route(path, batch, methods=["POST"], summary="A batch of Segment messages")
    return api
