"""A real SMTP server (aiosmtpd) with a certificate from a throwaway CA (trustme).

``SmtpServer(inbox, tls=...)``: ``"none"`` (plain, no STARTTLS), ``"starttls"`` (offers
STARTTLS; ``require_starttls`` refuses mail without it) or ``"implicit"`` (TLS from the
first byte). AUTH PLAIN/LOGIN checks ``users``. The :class:`Inbox` parses every message
it accepts and can refuse recipients, refuse data, or fail like a server in trouble.
"""

from __future__ import annotations

import asyncio
import email
import ssl
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    tls: bool
    login: str | None
    connection: int  # which connection (session) brought it


@dataclass
class Inbox:
    received: list[Received] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    outage: str | None = None  # "error" (421 at MAIL), "reset" (hang up), "timeout" (slow DATA)
    down_until: float | None = None
    clock: Callable[[], float] = time.monotonic
    slow_seconds: float = 1.5
    hits: int = 0

    def _outage(self) -> str | None:
        if self.down_until is not None:
            return (self.outage or "error") if self.clock() < self.down_until else None
        return self.outage

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.hits += 1
        if self._outage() == "reset":
            server.transport.abort()
            return "421 4.3.2 Closing"
        if self._outage() == "error":
            return "421 4.3.2 Service not available, closing transmission channel"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._outage() == "timeout":
            await asyncio.sleep(self.slow_seconds)
        if self.data_reply:
            return self.data_reply
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.received.append(
            Received(
                envelope.mail_from, list(envelope.rcpt_tos), parsed, raw, tls, login, id(session)
            )
        )
        return "250 2.0.0 Ok: queued as 4F2A1B"


class Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1, and contexts for both sides."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert("127.0.0.1", "localhost")

    def server_context(self) -> ssl.SSLContext:
        # PROTOCOL_TLS serves both sides: aiosmtpd's controller also uses it to test its port.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.server_cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


class SmtpServer:
    def __init__(
        self,
        inbox: Inbox,
        certificates: Certificates,
        tls: str = "starttls",
        require_starttls: bool = False,
        users: dict[str, str] | None = None,
    ) -> None:
        self.inbox = inbox
        self.port = free_port()
        self.users = users if users is not None else {"mailer": "s3cret/pass"}
        kwargs: dict[str, Any] = {
            "authenticator": self._authenticate,
            "auth_require_tls": tls == "starttls",  # implicit TLS is TLS from the start
        }
        if tls == "starttls":
            kwargs |= {
                "tls_context": certificates.server_context(),
                "require_starttls": require_starttls,
            }
        if tls == "implicit":
            kwargs["ssl_context"] = certificates.server_context()
        self.controller = Controller(inbox, hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(login) == password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
