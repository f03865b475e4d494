"""Signed unsubscribe links: who, which channel and which message, under an HMAC.

A link is ``<public URL>/unsubscribe/<payload>.<signature>``: the payload is the
base64url of the JSON ``[1, user key, channel, message id]``, the signature the base64url
of HMAC-SHA256 over it, keyed with ``JOURNEY_SECRET_KEY``. Whoever knows a user's id can
compute their message ids, so the id alone must never be a ticket: without the key no
link can be made, and a link changed in any character is refused. The link names the
user's id (as every ESP's unsubscribe link names its subscriber) and nothing else: no
address, no traits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

import orjson

VERSION = 1
#: Signatures of other purposes made with the same key can never pass for these.
_PURPOSE = b"journey-engine/unsubscribe-link:"
#: What ``journey simulate`` signs its links with: shorter than any key a server accepts
#: (``engine.settings.MIN_SECRET_KEY``), so a simulated link is valid nowhere.
SIMULATION_SECRET_KEY = "simulate"
#: The longest token read: a 512-character id in a 4-byte UTF-8 script, and the rest.
MAX_TOKEN = 4096


@dataclass(frozen=True, slots=True)
class UnsubscribeLink:
    """What a valid link says: unsubscribe ``user_key`` from ``channel``, from ``message_id``."""

    user_key: str
    channel: str
    message_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=8)
def _keyed(secret_key: str) -> hmac.HMAC:
    """An HMAC of ``secret_key`` that has read the purpose: each signature copies it
    instead of keying a new one (the key's pads are hashed once)."""
    return hmac.new(secret_key.encode("utf-8"), _PURPOSE, hashlib.sha256)


def _signature(secret_key: str, payload: str) -> str:
    mac = _keyed(secret_key).copy()
    mac.update(payload.encode("ascii"))
    return _b64(mac.digest())


def unsubscribe_token(secret_key: str, user_key: str, channel: str, message_id: str) -> str:
    """The path segment that identifies and authenticates one unsubscribe link."""
    payload = _b64(orjson.dumps([VERSION, user_key, channel, message_id]))
    return f"{payload}.{_signature(secret_key, payload)}"


def read_unsubscribe_token(secret_key: str, token: str) -> UnsubscribeLink | None:
    """What ``token`` says, or None if it was not made with ``secret_key`` (tampered,
    unsigned, truncated, or signed with another key)."""
    if not secret_key or len(token) > MAX_TOKEN or not token.isascii():
        return None
    payload, dot, signature = token.partition(".")
    if not dot or not hmac.compare_digest(signature, _signature(secret_key, payload)):
        return None
    try:
        fields = orjson.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        return None
    match fields:
        case [1, str(user_key), str(channel), str(message_id)]:
            return UnsubscribeLink(user_key, channel, message_id)
    return None
