"""Access logs without personal data: paths that carry a user id or a signed token are
logged with that part cut off (``/unsubscribe/…``, ``/api/users/…``, ``/webhooks/aliyun/…``).

``log_config()`` is uvicorn's own logging configuration with this filter on its access log.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from uvicorn.config import LOGGING_CONFIG

PRIVATE = re.compile(r"^(/unsubscribe/|/api/users/|/webhooks/aliyun/)[^?\s]*")


def redacted_path(path: str) -> str:
    return PRIVATE.sub(r"\1…", path)


class RedactPaths(logging.Filter):
    """For uvicorn's access log, whose third argument is the request's path and query."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redacted_path(args[2]), *args[3:])
        return True


def log_config() -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_paths"] = {"()": RedactPaths}
    config["handlers"]["access"]["filters"] = ["redact_paths"]
    return config
