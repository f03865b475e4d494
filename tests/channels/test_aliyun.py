"""Aliyun SendSms: the signed request, the template, OutId, segments and Aliyun's codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from engine.channels.providers.aliyun import AliyunSms, classify, phone_number, sign
from engine.channels.senders import OutboundMessage
from engine.errors import (
    CredentialError,
    InvalidAddress,
    PermanentDeliveryError,
    ProviderThrottled,
    TransientDeliveryError,
)
from tests.channels.fakes.aliyun import AliyunFake, expected_signature
from tests.channels.fakes.http import FakeServer, serve


@pytest.fixture
def fake() -> AliyunFake:
    return AliyunFake()


@pytest.fixture
def server(fake: AliyunFake) -> Iterator[FakeServer]:
    with serve(fake) as running:
        yield running


@pytest.fixture
def sender(server: FakeServer) -> Iterator[AliyunSms]:
    sms = AliyunSms("LTAI-test", "secret-test", "悦品商城", server.url, timeout=2.0)
    yield sms
    sms.close()


def sms(
    text: str,
    code: str | None = "SMS_100",
    param: str | None = '{"code": "4321"}',
    to: str = "+86 138-0013-8000",
    message_id: str = "msg_aliyun01",
) -> OutboundMessage:
    content = {"text": text}
    if code is not None:
        content["template_code"] = code
    if param is not None:
        content["template_param"] = param
    return OutboundMessage(message_id, "sms", to, content)


def test_signature_follows_aliyuns_encoding_rules() -> None:
    params = {
        "AccessKeyId": "testid",
        "SignName": "悦品 商城",
        "TemplateParam": '{"name":"a*b~c+d/e"}',
        "Timestamp": "2026-03-01T12:00:00Z",
    }
    assert sign(params, "testsecret") == expected_signature(params, "testsecret", "POST")
    assert sign(params, "testsecret") != sign(params, "othersecret")


def test_sends_the_template_with_out_id_and_receipts_the_biz_id(
    fake: AliyunFake, server: FakeServer, sender: AliyunSms
) -> None:
    receipt = sender.send(sms("【悦品商城】您的验证码4321，5分钟内有效。"))
    assert receipt.provider == "aliyun" and receipt.provider_message_id == fake.sent[0].biz_id
    sent = fake.sent[0]
    assert (sent.phone, sent.sign_name, sent.template) == ("8613800138000", "悦品商城", "SMS_100")
    assert sent.params == {"code": "4321"} and sent.out_id == "msg_aliyun01"
    form = server.requests[0].form()
    assert server.requests[0].method == "POST"
    assert {
        k: form[k]
        for k in ("Action", "Version", "SignatureMethod", "SignatureVersion", "Format", "RegionId")
    } == {
        "Action": "SendSms",
        "Version": "2017-05-25",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "Format": "JSON",
        "RegionId": "cn-hangzhou",
    }


def test_template_variables_go_as_strings(fake: AliyunFake, sender: AliyunSms) -> None:
    sender.send(sms("x", param='{"code": 4321, "vip": true}'))
    assert fake.sent[0].params == {"code": "4321", "vip": "true"}


def test_a_fresh_nonce_every_time(fake: AliyunFake, sender: AliyunSms) -> None:
    for n in range(3):
        sender.send(sms("x", message_id=f"msg_aliyun0{n}"))
    assert len(fake.sent) == 3 == len(fake.nonces)


def test_counts_segments_with_the_signature_at_70_and_67(sender: AliyunSms) -> None:
    assert sender.send(sms("中" * 64)).segments == 1  # 【悦品商城】 makes it 70
    assert sender.send(sms("中" * 65)).segments == 2
    assert sender.send(sms("【悦品商城】" + "a" * 65)).segments == 2  # ASCII counts the same


def test_numbers_as_aliyun_takes_them() -> None:
    assert phone_number("+86 138-0013-8000") == "8613800138000"
    assert phone_number("0085261234567") == "85261234567"
    assert phone_number("13800138000") == "13800138000"


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (sms("x", code=None), PermanentDeliveryError),
        (sms("x", param="{not json"), PermanentDeliveryError),
        (sms("x", param="[1, 2]"), PermanentDeliveryError),
    ],
)
def test_a_bad_template_is_refused_before_calling(
    message: OutboundMessage, error: type[Exception], server: FakeServer, sender: AliyunSms
) -> None:
    with pytest.raises(error, match="template"):
        sender.send(message)
    assert server.hits == 0


@pytest.mark.parametrize(
    ("message", "code", "kind"),
    [
        (sms("x", code="SMS_999"), "isv.SMS_TEMPLATE_ILLEGAL", PermanentDeliveryError),
        (sms("x", param="{}"), "isv.TEMPLATE_MISSING_PARAMETERS", PermanentDeliveryError),
        (sms("x", to="+86 123-45"), "isv.MOBILE_NUMBER_ILLEGAL", InvalidAddress),
    ],
)
def test_aliyun_refusals(
    message: OutboundMessage, code: str, kind: type[Exception], sender: AliyunSms
) -> None:
    with pytest.raises(kind, match=code) as caught:
        sender.send(message)
    assert not isinstance(caught.value, TransientDeliveryError)
    assert "12345" not in str(caught.value)  # the number, as given or as sent


def test_an_unapproved_sign_name_holds_the_channel(server: FakeServer) -> None:
    other = AliyunSms("LTAI-test", "secret-test", "没审核的签名", server.url, timeout=2.0)
    with pytest.raises(CredentialError, match=r"isv\.SMS_SIGNATURE_ILLEGAL"):
        other.send(sms("x"))


def test_a_skewed_clock_is_for_ops(server: FakeServer) -> None:
    late = AliyunSms(
        "LTAI-test",
        "secret-test",
        "悦品商城",
        server.url,
        timeout=2.0,
        clock=lambda: datetime.now(UTC) - timedelta(hours=1),
    )
    with pytest.raises(CredentialError, match=r"InvalidTimeStamp\.Expired"):
        late.send(sms("x"))


def test_the_per_number_limit_is_throttling(fake: AliyunFake, sender: AliyunSms) -> None:
    fake.per_number_per_minute = 1
    sender.send(sms("x"))
    with pytest.raises(ProviderThrottled) as caught:
        sender.send(sms("x", message_id="msg_aliyun02"))
    assert caught.value.retry_after == 60.0


@pytest.mark.parametrize(
    ("code", "message", "kind", "retry_after"),
    [
        ("isv.BUSINESS_LIMIT_CONTROL", "触发小时级流控Permits:5", ProviderThrottled, 3600.0),
        ("isv.BUSINESS_LIMIT_CONTROL", "触发天级流控Permits:10", PermanentDeliveryError, None),
        ("Throttling.User", "Request was denied due to user flow control.", ProviderThrottled, 1.0),
        ("isp.SYSTEM_ERROR", "", TransientDeliveryError, None),
        ("isv.AMOUNT_NOT_ENOUGH", "", CredentialError, None),
        ("isv.OUT_OF_SERVICE", "", CredentialError, None),
        ("isv.BLACK_KEY_CONTROL_LIMIT", "", PermanentDeliveryError, None),
    ],
)
def test_codes(code: str, message: str, kind: type[Exception], retry_after: float | None) -> None:
    error = classify(code, message, 200)
    assert type(error) is kind
    assert getattr(error, "retry_after", None) == retry_after


def test_the_request_carries_no_content_but_the_template(
    server: FakeServer, sender: AliyunSms
) -> None:
    sender.send(sms("【悦品商城】这段文字不发送", param=json.dumps({"code": "1"})))
    assert "这段文字不发送" not in server.requests[0].body.decode()
