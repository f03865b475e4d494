"""Access tokens that providers hand out for a while (WeCom's ``gettoken``, Google OAuth2).

One token is fetched and shared by every call until shortly before it expires; a call
the provider refuses as expired or invalid drops that token (and only that one, so
concurrent callers do not throw away a fresh replacement) and fetches the next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Refresh this many seconds before the provider's stated expiry (clocks drift).
MARGIN = 300.0


class TokenCache:
    """Caches what ``fetch`` returns: ``(token, seconds it is valid)``."""

    def __init__(
        self,
        fetch: Callable[[], tuple[str, float]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.fetches = 0

    def get(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires:
                token, valid_for = self._fetch()
                self.fetches += 1
                self._token = token
                self._expires = self._clock() + max(valid_for - MARGIN, valid_for / 2)
            return self._token

    def invalidate(self, token: str) -> None:
        """The provider refused ``token``: fetch a new one next time."""
        with self._lock:
            if self._token == token:
                self._token = None
