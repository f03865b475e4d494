"""What every HTTP provider shares: a client with explicit timeouts, and failure mapping.

Transport failures (connect errors, timeouts, a connection dropped mid-answer) are
transient. A timeout after the request went out is ambiguous: the provider may have
accepted the message. It is retried all the same, with the same message id, which
providers with an idempotency key turn into a no-op; the others may deliver it twice,
which is why timeouts should be generous rather than tight.

:func:`status_error` maps an HTTP status the provider gave no better answer for:
429 throttled, 5xx transient (both honouring ``Retry-After``), 401/403 credentials,
other 4xx permanent. Error texts never carry the address or content: :func:`redact`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import httpx

from engine.errors import (
    CredentialError,
    DeliveryError,
    PermanentDeliveryError,
    ProviderThrottled,
    TransientDeliveryError,
)
from engine.pii import redact as mask_all

USER_AGENT = "journey-engine"


def make_client(timeout: float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A client whose every phase is bounded: connecting, writing, reading, pool waits."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        transport=transport,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


def request(
    client: httpx.Client, method: str, url: str, what: str, **kwargs: Any
) -> httpx.Response:
    """Make a request; transport failures become :class:`TransientDeliveryError`."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientDeliveryError(f"{what}: timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise TransientDeliveryError(f"{what}: {type(exc).__name__}") from None


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def json_object(response: httpx.Response) -> Mapping[str, Any] | None:
    """The response body as a JSON object, or None when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def status_error(response: httpx.Response, what: str) -> DeliveryError:
    """The error for an HTTP status the provider's body did not explain better."""
    status = response.status_code
    text = f"{what}: HTTP {status}"
    if status == 429:
        return ProviderThrottled(text, retry_after=retry_after(response))
    if status >= 500 or status in (408, 409, 425):
        return TransientDeliveryError(text, retry_after=retry_after(response))
    if status in (401, 403):
        return CredentialError(text)
    return PermanentDeliveryError(text)


def redact(text: str, *private: str) -> str:
    """``text`` with every occurrence of the ``private`` strings (address, content) masked."""
    return mask_all(text, *private)
