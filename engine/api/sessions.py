"""The dashboard's sign-in: a signed, expiring cookie in place of the admin token.

The login form takes an admin token; the answer sets ``journey_session``: the token's
name, an expiry and an HMAC-SHA256 over both, keyed by a digest of that token. The
cookie never holds the token, cannot be forged without it, and stops working when it
expires or when its token is removed or changed (changing a token signs everyone out).
It is ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (no other site's page
can make the browser send it), ``Secure`` when the dashboard is served over HTTPS, and
limited to this server's paths. Requests that change something with only the cookie
must also carry ``X-Requested-With: journey-dashboard``, which a cross-site form
cannot set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

COOKIE = "journey_session"
LIFETIME = 12 * 3600  # seconds a sign-in lasts
CSRF_HEADER = "x-requested-with"
CSRF_VALUE = "journey-dashboard"


def _key(token: str) -> bytes:
    return hashlib.sha256(b"journey-dashboard-session\0" + token.encode()).digest()


def _signature(name_part: str, expires: int, token: str) -> str:
    mac = hmac.new(_key(token), f"{name_part}|{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def issue(name: str, token: str, now: float) -> str:
    """A cookie value for the holder of ``token`` (named ``name``), valid LIFETIME seconds."""
    name_part = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    expires = int(now) + LIFETIME
    return f"{name_part}|{expires}|{_signature(name_part, expires, token)}"


def verify(value: str | None, tokens: Mapping[str, str], now: float) -> str | None:
    """The name the cookie was issued to, if it is intact, unexpired, and its token is
    still configured; otherwise None."""
    if not value or value.count("|") != 2:
        return None
    name_part, expires_text, signature = value.split("|")
    try:
        name = base64.urlsafe_b64decode(name_part + "=" * (-len(name_part) % 4)).decode()
        expires = int(expires_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    token = tokens.get(name)
    if token is None or expires < now:
        return None
    expected = _signature(name_part, expires, token)
    return name if hmac.compare_digest(expected, signature) else None


def token_name(given: str | None, tokens: Mapping[str, str]) -> str | None:
    """The name of the admin token ``given``, comparing with every one in constant time."""
    if given is None:
        return None
    found = None
    raw = given.encode("utf-8", "surrogatepass")
    for name, token in tokens.items():
        if hmac.compare_digest(raw, token.encode()):
            found = name
    return found
