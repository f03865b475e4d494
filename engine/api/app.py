"""The HTTP side of the live engine: tracking API, admin API, unsubscribe links, health.

``create_app(db, settings, on_ingest)`` builds the FastAPI application; ``on_ingest`` is
called with the partitions of the new events after every commit that stored some (it
wakes the engine, or rings the doorbell of the workers).

Two rules hold for every route. A request body that stops arriving for
``JOURNEY_BODY_TIMEOUT`` seconds (a ``Content-Length`` larger than what is sent) is
answered 408 and the connection closed, so it cannot hold a worker. An unexpected error
answers 500 with ``Connection: close``: the server drops that connection after an error,
and the header tells keep-alive clients not to send their next request on it. The API
documents (``/docs``, ``/redoc``, ``/openapi.json``) are behind the admin token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.api import admin, analytics, dashboard, ops, segment, unsubscribe, webhooks
from engine.api.segment import ApiError
from engine.metrics import DatabaseCollector, exposition
from engine.settings import Settings
from engine.store.database import Database
from engine.store.ingest import Ingestor

log = logging.getLogger("engine.api")
CLOSE = {"Connection": "close"}


class BodyTimeout(Exception):
    """The client stopped sending the request body."""


class BodyReadTimeout:
    """ASGI middleware: every wait for the next piece of a request body is limited."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:  # after the body, receive() waits for a disconnect: no limit
                return await receive()
            try:
                with anyio.fail_after(self.timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout from None
            complete = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, timed_receive, send)


def _route_of(request: Request) -> str:
    """The route template (``/api/users/{user_id}``), never the path: paths hold user ids."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "?"))


def create_app(
    db: Database,
    settings: Settings,
    on_ingest: Callable[[Collection[int]], None] | None = None,
    *,
    broker_url: str | None = None,
) -> FastAPI:
    """``broker_url``: the Celery broker whose queue depths ``GET /api/ops`` reports
    (None: no broker, as in the embedded engine)."""
    # The documents are served below, behind the admin token.
    app = FastAPI(
        title="journey engine", version="1", docs_url=None, redoc_url=None, openapi_url=None
    )
    ingestor = Ingestor(db, on_ingest)
    app.state.db = db
    app.state.settings = settings
    app.state.ingestor = ingestor

    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        # SDKs read "code" and "message" from any error body; keep FastAPI's "detail" too.
        assert isinstance(exc, StarletteHTTPException)
        body = {
            "success": False,
            "code": "not_found" if exc.status_code == 404 else f"http_{exc.status_code}",
            "message": str(exc.detail),
            "detail": exc.detail,
        }
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        body = {
            "success": False,
            "code": "invalid_request",
            "message": f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request",
            "detail": [{"loc": e.get("loc"), "msg": e.get("msg")} for e in errors],
        }
        return JSONResponse(body, status_code=422)

    async def body_timeout(request: Request, _exc: Exception) -> JSONResponse:
        log.warning("request body timed out on %s %s", request.method, _route_of(request))
        body = {
            "success": False,
            "code": "request_timeout",
            "message": f"the request body did not arrive within {settings.body_timeout:g} s",
        }
        return JSONResponse(body, status_code=408, headers=CLOSE)

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The server logs the traceback and closes the connection after this answer.
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, _route_of(request))
        body = {"success": False, "code": "internal", "message": "internal error"}
        return JSONResponse(body, status_code=500, headers=CLOSE)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(BodyTimeout, body_timeout)
    app.add_exception_handler(Exception, internal_error)
    app.add_middleware(BodyReadTimeout, timeout=settings.body_timeout)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    collector = DatabaseCollector(db, broker_url)

    @app.get("/metrics", tags=["health"], dependencies=[Depends(admin.admin_guard(settings))])
    def metrics() -> Response:
        """Prometheus metrics (``Authorization: Bearer`` the admin token)."""
        return Response(exposition(collector), media_type=CONTENT_TYPE_LATEST)

    app.include_router(segment.router(ingestor, settings))
    # Before the admin routes: /api/users/{id}/timeline must not be read as a user id.
    app.include_router(analytics.router(db, settings))
    app.include_router(ops.router(db, settings, broker_url))
    app.include_router(admin.router(db, settings))
    dashboard.mount(app, settings)
    app.include_router(unsubscribe.router(db, settings))
    app.include_router(webhooks.router(db, settings))
    _documents(app, settings)
    return app


def _documents(app: FastAPI, settings: Settings) -> None:
    """``/openapi.json``, ``/docs`` and ``/redoc`` for holders of the admin token. A browser
    is asked for it with HTTP Basic (any user name, the token as password), and then sends
    it along when the documentation page fetches ``/openapi.json``."""
    guard = [Depends(admin.admin_guard(settings, browser=True))]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="journey engine API")

    @app.get("/redoc", include_in_schema=False, dependencies=guard)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="journey engine API")
