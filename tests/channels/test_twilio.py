"""Twilio Messages.json: the form, Basic auth, segments, and Twilio's error codes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.channels.providers.twilio import TwilioSms
from engine.channels.senders import OutboundMessage
from engine.errors import (
    CredentialError,
    InvalidAddress,
    PermanentDeliveryError,
    ProviderThrottled,
)
from tests.channels.fakes.http import FakeServer, serve
from tests.channels.fakes.twilio import TwilioFake


@pytest.fixture
def fake() -> TwilioFake:
    return TwilioFake()


@pytest.fixture
def server(fake: TwilioFake) -> Iterator[FakeServer]:
    with serve(fake) as running:
        yield running


def twilio(fake: TwilioFake, server: FakeServer, sender: str = "+15005550006") -> TwilioSms:
    return TwilioSms(fake.account_sid, fake.auth_token, sender, server.url, timeout=2.0)


def sms(text: str, to: str = "+14155550100") -> OutboundMessage:
    return OutboundMessage("msg_twilio01", "sms", to, {"text": text})


def test_posts_the_form_and_receipts_the_sid(fake: TwilioFake, server: FakeServer) -> None:
    receipt = twilio(fake, server).send(sms("Your code is 4321"))
    assert receipt.provider_message_id == fake.sent[0]["sid"] and receipt.segments == 1
    assert fake.sent[0]["To"] == "+14155550100" and fake.sent[0]["Body"] == "Your code is 4321"
    assert fake.sent[0]["From"] == "+15005550006"
    assert server.requests[0].headers["content-type"] == "application/x-www-form-urlencoded"


def test_a_messaging_service_sends_in_its_own_name(fake: TwilioFake, server: FakeServer) -> None:
    receipt = twilio(fake, server, sender="MG" + "0" * 32).send(sms("中" * 71))
    assert fake.sent[0]["MessagingServiceSid"] == "MG" + "0" * 32 and "From" not in fake.sent[0]
    assert receipt.segments == 2  # Twilio says 0 until it picks a sender: the count is ours


def test_segments_as_twilio_reports_them(fake: TwilioFake, server: FakeServer) -> None:
    assert twilio(fake, server).send(sms("a" * 161)).segments == 2


@pytest.mark.parametrize(
    ("to", "kind", "code"),
    [
        ("+15005550001", InvalidAddress, "21211"),
        ("+15005550009", InvalidAddress, "21614"),
        ("+15005550004", PermanentDeliveryError, "21610"),  # replied STOP
    ],
)
def test_refusals(
    to: str, kind: type[Exception], code: str, fake: TwilioFake, server: FakeServer
) -> None:
    with pytest.raises(kind, match=code) as caught:
        twilio(fake, server).send(sms("hi", to=to))
    assert to not in str(caught.value)
    assert fake.sent == []


def test_an_unstoppable_body_is_permanent(fake: TwilioFake, server: FakeServer) -> None:
    with pytest.raises(PermanentDeliveryError, match="21617"):
        twilio(fake, server).send(sms("a" * 1601))


def test_a_number_not_ours_holds_the_channel(fake: TwilioFake, server: FakeServer) -> None:
    with pytest.raises(CredentialError, match="21606"):
        twilio(fake, server, sender="+15005550000").send(sms("hi"))


def test_throttling_honours_retry_after(fake: TwilioFake, server: FakeServer) -> None:
    fake.throttle = True
    with pytest.raises(ProviderThrottled) as caught:
        twilio(fake, server).send(sms("hi"))
    assert caught.value.retry_after == 7.0
