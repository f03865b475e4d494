"""The HTTP side of the live engine: tracking API, admin API, unsubscribe links, health.

``create_app(db, settings, on_ingest)`` builds the FastAPI application; ``on_ingest`` is
called with the partitions of the new events after every commit that stored some (it
wakes the engine, or rings the doorbell of the workers).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.api import admin, segment, unsubscribe
from engine.api.segment import ApiError
from engine.settings import Settings
from engine.store.database import Database
from engine.store.ingest import Ingestor


def create_app(
    db: Database, settings: Settings, on_ingest: Callable[[Collection[int]], None] | None = None
) -> FastAPI:
    app = FastAPI(title="journey engine", version="1")
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

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(segment.router(ingestor, settings))
    app.include_router(admin.router(db, settings))
    app.include_router(unsubscribe.router(db, ingestor))
    return app
