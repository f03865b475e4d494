"""The HTTP API of the live engine (FastAPI): Segment tracking, admin, unsubscribe links."""

from engine.api.app import create_app

__all__ = ["create_app"]
