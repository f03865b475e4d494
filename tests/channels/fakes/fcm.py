"""Google's OAuth2 token endpoint and FCM's HTTP v1 ``messages:send``.

The token endpoint verifies the JWT assertion with the service account's public key
(RS256), its ``aud`` (the token URI), ``iss``, ``scope`` and ``kid``, as Google does, and
hands out access tokens. ``messages:send`` checks the bearer token and the project, and
answers with FCM's error shapes: ``UNREGISTERED`` for tokens in ``unregistered``,
``INVALID_ARGUMENT`` on ``message.token`` for a malformed one, ``QUOTA_EXCEEDED`` with
``Retry-After`` when ``quota_exceeded``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.channels.fakes.http import Reply, Request

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def fcm_error(status: int, state: str, message: str, code: str, **extra: Any) -> Reply:
    details: list[dict[str, Any]] = [{"@type": FCM_ERROR, "errorCode": code}]
    if extra.get("field"):
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": extra["field"], "description": message}],
            }
        )
    body = {"error": {"code": status, "message": message, "status": state, "details": details}}
    return Reply(status, body, dict(extra.get("headers", {})))


@dataclass
class FcmFake:
    project_id: str = "journey-test"
    client_email: str = "push@journey-test.iam.gserviceaccount.com"
    key_id: str = "key-1"
    base_url: str = ""  # set once the server runs: the token URI lives here too
    unregistered: set[str] = field(default_factory=set)
    quota_exceeded: bool = False
    access_tokens: set[str] = field(default_factory=set)
    token_calls: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    private_key: rsa.RSAPrivateKey = field(default=None, repr=False)  # type: ignore[assignment]
    outage_reply = fcm_error(
        503,
        "UNAVAILABLE",
        "The service is currently unavailable.",
        "UNAVAILABLE",
        headers={"Retry-After": "2"},
    )

    def __post_init__(self) -> None:
        if self.private_key is None:
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def service_account(self, private_key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
        pem = (private_key or self.private_key).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key_id,
            "private_key": pem.decode(),
            "client_email": self.client_email,
            "client_id": "1234567890",
            "token_uri": f"{self.base_url}/token",
        }

    def __call__(self, request: Request) -> Reply:
        if request.path == "/token":
            return self._token(request)
        if request.path == f"/v1/projects/{self.project_id}/messages:send":
            return self._send(request)
        return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNSPECIFIED_ERROR")

    def _token(self, request: Request) -> Reply:
        self.token_calls += 1
        form = request.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply(
                400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
            )
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.private_key.public_key(),
                algorithms=["RS256"],
                audience=f"{self.base_url}/token",
                issuer=self.client_email,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            return Reply(
                400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"}
            )
        if header.get("kid") != self.key_id or claims.get("scope") != SCOPE:
            return Reply(
                400, {"error": "invalid_scope", "error_description": "Bad key id or scope"}
            )
        if claims["exp"] - claims["iat"] > 3600:
            return Reply(
                400, {"error": "invalid_grant", "error_description": "Token too long-lived"}
            )
        token = "ya29." + secrets.token_urlsafe(24)
        self.access_tokens.add(token)
        return Reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _send(self, request: Request) -> Reply:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.access_tokens:
            body = {
                "error": {
                    "code": 401,
                    "message": "Request had invalid authentication credentials.",
                    "status": "UNAUTHENTICATED",
                }
            }
            return Reply(401, body)
        message = request.json().get("message") or {}
        token = message.get("token", "")
        if self.quota_exceeded:
            return fcm_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded.",
                "QUOTA_EXCEEDED",
                headers={"Retry-After": "30"},
            )
        if not token or len(token) < 8:
            return fcm_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid registration token",
                "INVALID_ARGUMENT",
                field="message.token",
            )
        if token in self.unregistered:
            return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        if not (message.get("notification") or {}).get("title"):
            return fcm_error(
                400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "INVALID_ARGUMENT"
            )
        name = f"projects/{self.project_id}/messages/0:{secrets.token_hex(8)}"
        self.sent.append({"name": name, **message})
        return Reply(200, {"name": name})
