"""FCM HTTP v1: the service-account token, the message, and FCM's errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.channels.providers.fcm import FcmPush, load_service_account
from engine.channels.senders import OutboundMessage
from engine.errors import (
    ConfigurationError,
    InvalidAddress,
    PermanentDeliveryError,
    ProviderThrottled,
    TransientDeliveryError,
)
from tests.channels.fakes.fcm import FcmFake
from tests.channels.fakes.http import FakeServer, serve


@pytest.fixture(scope="module")
def fake_keys() -> FcmFake:
    return FcmFake()  # one RSA key for the module: generating it is slow


@pytest.fixture
def fake(fake_keys: FcmFake) -> FcmFake:
    return FcmFake(private_key=fake_keys.private_key)


@pytest.fixture
def server(fake: FcmFake) -> Iterator[FakeServer]:
    with serve(fake) as running:
        fake.base_url = running.url
        yield running


@pytest.fixture
def push(fake: FcmFake, server: FakeServer) -> Iterator[FcmPush]:
    sender = FcmPush(fake.service_account(), server.url, timeout=2.0)
    yield sender
    sender.close()


def note(n: int = 1, to: str = "token-of-lilei-phone", url: str | None = None) -> OutboundMessage:
    content = {"title": "新品上架", "body": "本周五 10:00 上新"}
    if url:
        content["url"] = url
    return OutboundMessage(f"msg_push{n:03d}", "push", to, content)


def test_sends_the_v1_message(fake: FcmFake, push: FcmPush) -> None:
    receipt = push.send(note(url="https://shop.example.com/new"))
    sent = fake.sent[0]
    assert receipt.provider_message_id == sent["name"]
    assert sent["token"] == "token-of-lilei-phone"
    assert sent["notification"] == {"title": "新品上架", "body": "本周五 10:00 上新"}
    assert sent["data"] == {"message_id": "msg_push001", "url": "https://shop.example.com/new"}
    assert sent["android"]["notification"]["tag"] == "msg_push001"
    assert sent["apns"]["headers"]["apns-collapse-id"] == "msg_push001"
    assert sent["webpush"]["fcm_options"]["link"] == "https://shop.example.com/new"


def test_one_access_token_for_many_messages(fake: FcmFake, push: FcmPush) -> None:
    for n in range(3):
        push.send(note(n))
    assert fake.token_calls == 1


def test_a_revoked_access_token_is_replaced_once(fake: FcmFake, push: FcmPush) -> None:
    push.send(note(1))
    fake.access_tokens.clear()
    push.send(note(2))
    assert fake.token_calls == 2 and len(fake.sent) == 2


@pytest.mark.parametrize("token", ["token-uninstalled", "short"])
def test_a_dead_token_asks_for_the_trait_to_be_cleared(
    token: str, fake: FcmFake, push: FcmPush
) -> None:
    fake.unregistered.add("token-uninstalled")
    with pytest.raises(InvalidAddress) as caught:
        push.send(note(to=token))
    assert (caught.value.trait, caught.value.clear) == ("push_token", True)


def test_an_invalid_message_is_permanent_but_keeps_the_token(push: FcmPush) -> None:
    empty = OutboundMessage(
        "msg_push009", "push", "token-of-lilei-phone", {"title": "", "body": ""}
    )
    with pytest.raises(PermanentDeliveryError) as caught:
        push.send(empty)
    assert not isinstance(caught.value, InvalidAddress)


def test_quota_and_outages_honour_retry_after(
    fake: FcmFake, server: FakeServer, push: FcmPush
) -> None:
    fake.quota_exceeded = True
    with pytest.raises(ProviderThrottled) as throttled:
        push.send(note(1))
    assert throttled.value.retry_after == 30.0
    fake.quota_exceeded = False
    push.send(note(2))  # the token is fetched and cached before the outage
    server.outage = "error"
    with pytest.raises(TransientDeliveryError) as down:
        push.send(note(3))
    assert down.value.retry_after == 2.0


def test_the_key_from_a_file_or_inline(fake: FcmFake, tmp_path: Path) -> None:
    key = fake.service_account()
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    assert load_service_account(str(path)) == key
    assert load_service_account(json.dumps(key)) == key
    with pytest.raises(ConfigurationError, match=r"JOURNEY_FCM_SERVICE_ACCOUNT.*client_email"):
        load_service_account(json.dumps({**key, "client_email": ""}))
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_service_account(str(tmp_path / "missing.json"))
