"""Email over SMTP: TLS as the URL says, AUTH, a MIME multipart/alternative message.

``JOURNEY_SMTP_URL``:

- ``smtp://user:pass@host:port``: upgrades with STARTTLS when the server offers it
  (default port 25);
- ``smtp+starttls://...``: STARTTLS required; a server that does not offer it holds the
  channel (default port 587);
- ``smtps://...``: TLS from the first byte (default port 465).

Certificates are verified against the system's trust store. User and password are
percent-decoded; AUTH is used when a user is given.

The message: ``multipart/alternative`` with ``text/plain`` (the ``text`` part, or one
derived from the HTML) and ``text/html``; ``From`` from ``JOURNEY_EMAIL_FROM``;
``Message-ID: <message id@sender's domain>``, so a retry carries the same id (SMTP has no
idempotency key: the Message-ID is what receivers and bounces recognise); RFC 8058
one-click unsubscribe: ``List-Unsubscribe: <url>`` and, for an HTTPS URL,
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (sign both with DKIM at the relay).

Replies: 4xx transient, 5xx permanent; a refused recipient (550/551/553, or 5.1.x) is a
bad address; refused authentication, a refused sender, no STARTTLS or an untrusted
certificate are credential errors that hold the channel; lost connections and
timeouts are transient. One connection is kept and reused, checked with NOOP when idle.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, parseaddr
from typing import Literal
from urllib.parse import unquote, urlsplit

from engine.channels.html_text import html_to_text
from engine.channels.senders import OutboundMessage, Receipt
from engine.channels.settings import ChannelSettings, Required
from engine.errors import (
    ConfigurationError,
    CredentialError,
    DeliveryError,
    InvalidAddress,
    PermanentDeliveryError,
    TransientDeliveryError,
)

Security = Literal["opportunistic", "starttls", "tls"]
SCHEMES: dict[str, tuple[Security, int]] = {
    "smtp": ("opportunistic", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
#: Headers the sender writes itself; ``message.headers`` may not replace them.
OWN_HEADERS = frozenset(
    {
        *("from", "to", "subject", "date", "message-id", "mime-version", "content-type"),
        *("content-transfer-encoding", "content-language"),
        *("list-unsubscribe", "list-unsubscribe-post"),
    }
)
ADDRESS_REPLIES = frozenset({550, 551, 553})
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
IDLE_CHECK = 30.0


@dataclass(frozen=True)
class SmtpUrl:
    security: Security
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpUrl:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ConfigurationError(
                "JOURNEY_SMTP_URL", "the scheme must be smtp://, smtp+starttls:// or smtps://"
            )
        if not parts.hostname:
            raise ConfigurationError("JOURNEY_SMTP_URL", "no host")
        security, default_port = SCHEMES[parts.scheme]
        try:
            port = parts.port or default_port
        except ValueError:
            raise ConfigurationError("JOURNEY_SMTP_URL", "the port is not a number") from None
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(security, parts.hostname, port, user, password)


def reply_error(code: int, text: str, what: str) -> DeliveryError:
    """The error for an SMTP reply ``code`` to ``what`` (RCPT, DATA...)."""
    message = f"SMTP {what} refused: {code} {text}".strip()
    if 400 <= code < 500:
        return TransientDeliveryError(message)
    if what == "RCPT" and (code in ADDRESS_REPLIES or text.startswith("5.1.")):
        return InvalidAddress(message, trait="email")
    return PermanentDeliveryError(message)


def _text(raw: bytes | str) -> str:
    return (raw.decode(errors="replace") if isinstance(raw, bytes) else raw).strip()


def classify(exc: BaseException, to: str) -> DeliveryError:
    """The delivery error for what smtplib (or the socket under it) raised."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return CredentialError(f"SMTP authentication refused: {exc.smtp_code}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (550, b""))
        return reply_error(code, _text(text).replace(to, "***"), "RCPT")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        if 400 <= exc.smtp_code < 500:
            return TransientDeliveryError(f"SMTP MAIL FROM deferred: {exc.smtp_code}")
        return CredentialError(f"SMTP sender refused: {exc.smtp_code} {_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return CredentialError(f"SMTP server does not support what is required: {exc}")
    if isinstance(exc, smtplib.SMTPResponseException):
        what = "DATA" if isinstance(exc, smtplib.SMTPDataError) else "command"
        return reply_error(exc.smtp_code, _text(exc.smtp_error), what)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CredentialError(f"SMTP server's certificate is not trusted: {exc.verify_message}")
    return TransientDeliveryError(f"SMTP connection failed: {type(exc).__name__}")


class SmtpEmail:
    """Sends email through one SMTP server, reusing one connection."""

    provider = "smtp"

    def __init__(
        self,
        url: str,
        sender: str,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = SmtpUrl.parse(url)
        address = parseaddr(sender)[1]
        if "@" not in address:
            raise ConfigurationError("JOURNEY_EMAIL_FROM", "not an email address")
        self._from = sender
        self._envelope_from = address
        self._domain = address.rsplit("@", 1)[1]
        self.account = f"{self._url.username or ''}@{self._url.host}:{self._url.port}"
        self._timeout = timeout
        self._context = ssl_context or ssl.create_default_context()
        self._clock = clock
        self._lock = threading.Lock()
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0

    def close(self) -> None:
        with self._lock:
            self._drop()

    def message_id(self, message: OutboundMessage) -> str:
        return f"<{message.message_id}@{self._domain}>"

    def compose(self, message: OutboundMessage) -> EmailMessage:
        """The MIME message for ``message``."""
        if "@" not in message.to:
            raise InvalidAddress("not an email address", trait="email")
        html = message.content.get("html")
        text = message.content.get("text") or (html_to_text(html) if html else "")
        mime = EmailMessage(policy=SMTP_POLICY)
        try:
            mime["From"] = self._from
            mime["To"] = message.to
            mime["Subject"] = " ".join(message.content.get("subject", "").split())
            mime["Date"] = formatdate(usegmt=True)
            mime["Message-ID"] = self.message_id(message)
            if message.unsubscribe_url:
                mime["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
                if message.unsubscribe_url.startswith("https://"):
                    mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            for name, value in message.headers.items():
                if name.lower() in OWN_HEADERS:
                    raise PermanentDeliveryError(f"header {name!r} is set by the sender")
                mime[name] = value
        except ValueError as exc:  # a header with a line break, or an unparsable address
            raise PermanentDeliveryError(f"bad email header: {exc}") from None
        mime.set_content(text)
        if html:
            mime.add_alternative(html, subtype="html")
        locale = (message.locale or "").replace("_", "-")
        if LANGUAGE_TAG.match(locale):  # after the content, which clears Content-* headers
            mime["Content-Language"] = locale
        return mime

    def send(self, message: OutboundMessage) -> Receipt:
        mime = self.compose(message)
        with self._lock:
            try:
                smtp = self._connection()
                smtp.send_message(mime, from_addr=self._envelope_from, to_addrs=[message.to])
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                raise classify(exc, message.to) from None
            self._last_used = self._clock()
        return Receipt(self.provider, self.message_id(message))

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None and self._clock() - self._last_used > IDLE_CHECK:
            try:
                alive = self._smtp.noop()[0] == 250
            except (smtplib.SMTPException, OSError):
                alive = False
            if not alive:
                self._drop()
        if self._smtp is None:
            self._smtp = self._connect()
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        url = self._url
        smtp: smtplib.SMTP
        if url.security == "tls":
            smtp = smtplib.SMTP_SSL(
                url.host, url.port, timeout=self._timeout, context=self._context
            )
        else:
            smtp = smtplib.SMTP(url.host, url.port, timeout=self._timeout)
        try:
            smtp.ehlo()
            if url.security == "starttls" or (
                url.security == "opportunistic" and smtp.has_extn("starttls")
            ):
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError("STARTTLS, which smtp+starttls:// requires")
                smtp.starttls(context=self._context)
                smtp.ehlo()
            if url.username:
                smtp.login(url.username, url.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None


def from_settings(settings: ChannelSettings) -> SmtpEmail:
    need = Required("JOURNEY_EMAIL_PROVIDER=smtp")
    url = need(settings.smtp_url, "JOURNEY_SMTP_URL")
    sender = need(settings.email_from, "JOURNEY_EMAIL_FROM")
    need.check()
    return SmtpEmail(url.get_secret_value(), sender, settings.send_timeout)
