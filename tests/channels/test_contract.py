"""The contract every sender keeps, run against each built-in provider's local fake.

- a message is delivered once and acknowledged with a receipt naming the provider, with
  the message id where the provider carries one;
- an address the provider refuses is an InvalidAddress naming the profile trait, and the
  error text does not repeat the address;
- a provider in trouble (errors, timeouts, dropped connections) and a provider out of
  reach are transient errors; the sender works again once the provider is back;
- credentials the provider refuses are a CredentialError (which holds the channel);
- ``provider`` and ``account`` name the sender without giving away a secret.
"""

from __future__ import annotations

import pytest

from engine.channels import get_channel
from engine.channels.senders import LocalSink, OutboundMessage, RecordingSender
from engine.errors import (
    CredentialError,
    InvalidAddress,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from tests.channels.harness import Harness


def test_delivers_once_with_a_receipt(harness: Harness) -> None:
    receipt = harness.sender.send(harness.make("msg_contract01"))
    assert receipt.provider == harness.sender.provider == harness.name
    assert harness.delivered() == ["msg_contract01"]
    assert receipt.provider_message_id or harness.name == "wecom_robot"


def test_two_messages_are_two_deliveries(harness: Harness) -> None:
    harness.sender.send(harness.make("msg_contract01"))
    harness.sender.send(harness.make("msg_contract02"))
    assert harness.delivered() == ["msg_contract01", "msg_contract02"]


def test_refused_address_is_permanent_and_names_the_trait(refusing: Harness) -> None:
    assert refusing.bad_address is not None
    with pytest.raises(InvalidAddress) as caught:
        refusing.sender.send(refusing.bad_address)
    spec = get_channel(refusing.channel)
    assert spec is not None and caught.value.trait == spec.address_trait
    assert refusing.bad_address.to not in str(caught.value)
    assert refusing.delivered() == []


@pytest.mark.parametrize("outage", ["error", "timeout", "reset"])
def test_provider_trouble_is_transient_and_passes(harness: Harness, outage: str) -> None:
    harness.outage.outage = outage
    with pytest.raises(TransientDeliveryError) as caught:
        harness.sender.send(harness.make("msg_contract01"))
    assert not isinstance(caught.value, CredentialError)
    assert harness.delivered() == []
    harness.outage.outage = None
    harness.sender.send(harness.make("msg_contract01"))
    assert harness.delivered() == ["msg_contract01"]


def test_unreachable_provider_is_transient(harness: Harness) -> None:
    with pytest.raises(TransientDeliveryError) as caught:
        harness.unreachable().send(harness.make("msg_contract01"))
    assert not isinstance(caught.value, CredentialError)


def test_refused_credentials_hold_the_channel(harness: Harness) -> None:
    with pytest.raises(CredentialError):
        harness.wrong_credentials().send(harness.make("msg_contract01"))
    assert harness.delivered() == []


def test_names_itself_without_secrets(harness: Harness) -> None:
    assert isinstance(harness.sender.provider, str) and harness.sender.provider
    account = harness.sender.account
    assert isinstance(account, str) and account
    for secret in ("secret-test", "token-test", "app-secret", "robot-key-1", "s3cret"):
        assert secret not in account


@pytest.mark.parametrize("sender", [LocalSink(), RecordingSender()], ids=["sink", "recording"])
def test_local_senders_keep_the_contract(sender: LocalSink | RecordingSender) -> None:
    message = OutboundMessage("msg_local01", "sms", "+8613800138000", {"text": "hi"})
    receipt = sender.send(message)
    assert receipt.provider == sender.provider
    assert receipt.provider_message_id == "msg_local01"
    assert sender.send(message) == receipt  # the same message again: the same receipt


def test_errors_are_split_by_retry() -> None:
    assert issubclass(CredentialError, TransientDeliveryError)
    assert issubclass(InvalidAddress, PermanentDeliveryError)
