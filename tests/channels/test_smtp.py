"""SMTP against a real server (aiosmtpd): TLS modes, AUTH, the MIME message, replies."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from engine.channels.providers.smtp import SmtpEmail, SmtpUrl
from engine.channels.senders import OutboundMessage
from engine.errors import (
    ConfigurationError,
    CredentialError,
    InvalidAddress,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from tests.channels.fakes.smtp import Certificates, Inbox, SmtpServer

FROM = "悦品商城 <news@shop.example.com>"
HTML = "<h1>欢迎</h1><p>Hi Li, <a href='https://shop.example.com/new'>new arrivals</a></p>"


@pytest.fixture(scope="module")
def certificates() -> Certificates:
    return Certificates()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def server(inbox: Inbox, certificates: Certificates) -> Iterator[SmtpServer]:
    with SmtpServer(inbox, certificates, tls="starttls") as running:
        yield running


def mailer(
    server: SmtpServer,
    certificates: Certificates,
    scheme: str = "smtp",
    auth: str = "mailer:s3cret%2Fpass@",
) -> SmtpEmail:
    url = f"{scheme}://{auth}127.0.0.1:{server.port}"
    return SmtpEmail(url, FROM, 2.0, certificates.client_context())


def email(
    message_id: str = "msg_email01", to: str = "li@example.com", **extra: object
) -> OutboundMessage:
    fields: dict[str, object] = {"content": {"subject": "新品上架 New arrivals", "html": HTML}}
    fields |= extra
    return OutboundMessage(message_id, "email", to, **fields)  # type: ignore[arg-type]


def test_a_multipart_message_with_its_headers(
    inbox: Inbox, server: SmtpServer, certificates: Certificates
) -> None:
    receipt = mailer(server, certificates).send(
        email(
            unsubscribe_url="https://shop.example.com/unsubscribe/msg_email01",
            locale="zh-CN",
            headers={"X-Campaign": "welcome"},
        )
    )
    got = inbox.received[0]
    assert (got.mail_from, got.rcpt_tos) == ("news@shop.example.com", ["li@example.com"])
    mime = got.message
    assert receipt.provider_message_id == mime["Message-ID"] == "<msg_email01@shop.example.com>"
    assert mime["Subject"] == "新品上架 New arrivals" and mime["From"] == FROM
    assert mime["To"] == "li@example.com" and mime["Date"]
    assert mime.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mime.iter_parts()] == ["text/plain", "text/html"]
    assert mime.get_body(("html",)).get_content().strip() == HTML
    assert mime.get_body(("plain",)).get_content().replace("\r\n", "\n") == (
        "欢迎\n\nHi Li, new arrivals (https://shop.example.com/new)\n"
    )
    assert mime["List-Unsubscribe"] == "<https://shop.example.com/unsubscribe/msg_email01>"
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime["Content-Language"] == "zh-CN" and mime["X-Campaign"] == "welcome"


def test_the_text_part_when_the_template_gives_one(
    inbox: Inbox, server: SmtpServer, certificates: Certificates
) -> None:
    content = {"subject": "Hi\n", "html": HTML, "text": "Hi Li, see what is new."}
    mailer(server, certificates).send(email(content=content))
    mime = inbox.received[0].message
    assert mime.get_body(("plain",)).get_content().strip() == "Hi Li, see what is new."
    assert mime["Subject"] == "Hi"  # a rendered line break does not break the header


def test_one_click_needs_https(
    inbox: Inbox, server: SmtpServer, certificates: Certificates
) -> None:
    mailer(server, certificates).send(email(unsubscribe_url="http://127.0.0.1:8000/unsubscribe/x"))
    mime = inbox.received[0].message
    assert mime["List-Unsubscribe"] == "<http://127.0.0.1:8000/unsubscribe/x>"
    assert mime["List-Unsubscribe-Post"] is None


def test_headers_of_its_own_are_not_replaced(
    server: SmtpServer, certificates: Certificates
) -> None:
    sender = mailer(server, certificates)
    with pytest.raises(PermanentDeliveryError, match="Message-ID"):
        sender.send(email(headers={"Message-ID": "<other@x>"}))
    with pytest.raises(PermanentDeliveryError, match="header"):
        sender.send(email(headers={"X-Bad": "a\r\nBcc: victim@example.com"}))


@pytest.mark.parametrize(
    ("tls", "scheme"),
    [("starttls", "smtp"), ("starttls", "smtp+starttls"), ("implicit", "smtps"), ("none", "smtp")],
)
def test_tls_as_the_url_says(tls: str, scheme: str, certificates: Certificates) -> None:
    inbox = Inbox()
    with SmtpServer(inbox, certificates, tls=tls) as server:
        mailer(server, certificates, scheme).send(email())
    assert inbox.received[0].tls == (tls != "none")
    assert inbox.received[0].login == "mailer"


def test_starttls_required_but_not_offered_holds_the_channel(certificates: Certificates) -> None:
    inbox = Inbox()
    with (
        SmtpServer(inbox, certificates, tls="none") as server,
        pytest.raises(CredentialError, match="STARTTLS"),
    ):
        mailer(server, certificates, "smtp+starttls").send(email())
    assert inbox.received == []


def test_an_untrusted_certificate_holds_the_channel(server: SmtpServer) -> None:
    url = f"smtp+starttls://mailer:s3cret%2Fpass@127.0.0.1:{server.port}"
    sender = SmtpEmail(url, FROM, 2.0, ssl.create_default_context())  # no test CA
    with pytest.raises(CredentialError, match="certificate"):
        sender.send(email())


def test_without_a_user_no_auth(
    inbox: Inbox, server: SmtpServer, certificates: Certificates
) -> None:
    mailer(server, certificates, auth="").send(email())
    assert inbox.received[0].login is None


def test_one_connection_serves_many_messages(
    inbox: Inbox, server: SmtpServer, certificates: Certificates
) -> None:
    sender = mailer(server, certificates)
    for n in range(3):
        sender.send(email(f"msg_email0{n}"))
    assert len(inbox.received) == 3
    assert len({received.connection for received in inbox.received}) == 1


@pytest.mark.parametrize(
    ("stage", "reply", "kind"),
    [
        ("RCPT", "550 5.1.1 <x@example.com>: Recipient address rejected", InvalidAddress),
        ("RCPT", "553 5.1.3 Bad recipient address syntax", InvalidAddress),
        ("RCPT", "452 4.2.2 Mailbox full", TransientDeliveryError),
        ("RCPT", "554 5.7.1 Recipient refused by policy", PermanentDeliveryError),
        ("DATA", "451 4.7.1 Try again later", TransientDeliveryError),
        ("DATA", "554 5.7.1 Message rejected as spam", PermanentDeliveryError),
    ],
)
def test_server_replies(
    stage: str,
    reply: str,
    kind: type[Exception],
    inbox: Inbox,
    server: SmtpServer,
    certificates: Certificates,
) -> None:
    if stage == "RCPT":
        inbox.refuse_rcpt["x@example.com"] = reply
    else:
        inbox.data_reply = reply
    with pytest.raises(kind) as caught:
        mailer(server, certificates).send(email(to="x@example.com"))
    assert type(caught.value) is kind
    assert "x@example.com" not in str(caught.value)


def test_not_an_address_is_refused_before_connecting(
    inbox: Inbox, server: SmtpServer, certificates: Certificates
) -> None:
    with pytest.raises(InvalidAddress):
        mailer(server, certificates).send(email(to="not-an-email"))
    assert inbox.hits == 0


def test_urls() -> None:
    assert SmtpUrl.parse("smtp://relay") == SmtpUrl("opportunistic", "relay", 25)
    assert SmtpUrl.parse("smtp+starttls://u%40x:p%3Aw@mx:2525") == SmtpUrl(
        "starttls", "mx", 2525, "u@x", "p:w"
    )
    assert SmtpUrl.parse("smtps://mx").port == 465
    with pytest.raises(ConfigurationError, match="JOURNEY_SMTP_URL"):
        SmtpUrl.parse("http://mx")
    with pytest.raises(ConfigurationError, match="JOURNEY_EMAIL_FROM"):
        SmtpEmail("smtp://mx", "nobody")
