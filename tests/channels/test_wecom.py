"""WeCom: the cached access token, message types, members, the robot, and errcodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.channels.breaker import CircuitBreaker, MemoryBreakerStore
from engine.channels.guard import GuardedSender
from engine.channels.providers.wecom import WeComApp, WeComRobot, classify
from engine.channels.ratelimit import MemoryRateLimiter
from engine.channels.senders import OutboundMessage
from engine.errors import (
    CredentialError,
    InvalidAddress,
    PermanentDeliveryError,
    ProviderThrottled,
    RateLimited,
    TransientDeliveryError,
)
from tests.channels.fakes.http import FakeServer, serve
from tests.channels.fakes.wecom import WeComFake


@pytest.fixture
def fake() -> WeComFake:
    return WeComFake()


@pytest.fixture
def server(fake: WeComFake) -> Iterator[FakeServer]:
    with serve(fake) as running:
        yield running


@pytest.fixture
def app(fake: WeComFake, server: FakeServer) -> WeComApp:
    return WeComApp(fake.corp_id, fake.secret, fake.agent_id, server.url, timeout=2.0)


@pytest.fixture
def robot(fake: WeComFake, server: FakeServer) -> WeComRobot:
    return WeComRobot(f"{server.url}/cgi-bin/webhook/send?key={fake.robot_key}", timeout=2.0)


def message(
    n: int = 1, to: str = "lilei", params: dict[str, str] | None = None, **parts: str
) -> OutboundMessage:
    content = {"content": "**新品上架** 本周五 10:00", **parts}
    return OutboundMessage(f"msg_wecom{n:03d}", "wecom", to, content, params=params or {})


def test_one_token_serves_many_messages(fake: WeComFake, app: WeComApp) -> None:
    for n in range(3):
        assert app.send(message(n)).provider_message_id
    assert fake.token_calls == 1 and len(fake.sent) == 3


def test_an_expired_token_is_fetched_again_and_the_message_sent_once(
    fake: WeComFake, app: WeComApp
) -> None:
    app.send(message(1))
    fake.expire_tokens()
    app.send(message(2))
    assert fake.token_calls == 2
    assert [m["markdown"]["content"] for m in fake.sent] == [message().content["content"]] * 2


def test_markdown_by_default_a_card_with_title_and_url_text_on_request(
    fake: WeComFake, app: WeComApp
) -> None:
    app.send(message(1))
    app.send(
        message(2, title="新品", url="https://shop.example.com/new", params={"btntxt": "看看"})
    )
    app.send(message(3, params={"msgtype": "text"}))
    first, card, text = fake.sent
    assert (first["msgtype"], first["touser"], first["agentid"]) == ("markdown", "lilei", 1000002)
    assert card["textcard"] == {
        "title": "新品",
        "description": message().content["content"],
        "url": "https://shop.example.com/new",
        "btntxt": "看看",
    }
    assert text == {**text, "msgtype": "text", "text": {"content": message().content["content"]}}
    with pytest.raises(PermanentDeliveryError, match="msgtype"):
        app.send(message(4, params={"msgtype": "voice"}))


def test_a_member_without_a_licence_is_a_bad_address(fake: WeComFake, app: WeComApp) -> None:
    fake.members.add("zhangsan")
    original = fake._send

    def unlicensed(request):  # type: ignore[no-untyped-def]
        reply = original(request)
        fake.sent.pop()
        reply.body["unlicenseduser"] = "zhangsan"
        return reply

    fake._send = unlicensed  # type: ignore[method-assign]
    with pytest.raises(InvalidAddress) as caught:
        app.send(message(1, to="ZhangSan"))
    assert caught.value.trait == "wecom_userid" and not caught.value.clear


def test_wecom_drops_what_exceeds_the_member_limit_unless_the_guard_holds_it(
    fake: WeComFake, app: WeComApp
) -> None:
    for n in range(31):
        app.send(message(n))  # no error: WeCom answers ok...
    assert len(fake.dropped) == 1  # ...and drops the 31st
    guarded = GuardedSender(
        app,
        "wecom:app:x",
        CircuitBreaker("wecom:app:x", MemoryBreakerStore()),
        MemoryRateLimiter(),
        recipient_rates=app.recipient_rates,
    )
    for n in range(30):
        guarded.send(message(n, to="hanmeimei"))
    with pytest.raises(RateLimited):
        guarded.send(message(31, to="hanmeimei"))
    assert len(fake.dropped) == 1


def test_the_robot_mentions_the_member(fake: WeComFake, robot: WeComRobot) -> None:
    robot.send(message(1))
    robot.send(message(2, params={"msgtype": "text"}))
    robot.send(message(3, title="新品", url="https://shop.example.com/new"))
    markdown, text, news = fake.robot_posts
    assert markdown["markdown"]["content"].endswith("\n<@lilei>")
    assert text["text"]["mentioned_list"] == ["lilei"]
    assert news["news"]["articles"] == [
        {
            "title": "新品",
            "description": message().content["content"],
            "url": "https://shop.example.com/new",
        }
    ]
    assert robot.account_rates and str(robot.account_rates[0]) == "20/min"
    assert fake.robot_key not in robot.account


def test_the_robot_past_its_rate_is_throttled(fake: WeComFake, robot: WeComRobot) -> None:
    for n in range(20):
        robot.send(message(n))
    with pytest.raises(ProviderThrottled) as caught:
        robot.send(message(21))
    assert caught.value.retry_after == 60.0


@pytest.mark.parametrize(
    ("errcode", "kind"),
    [
        (-1, TransientDeliveryError),
        (45009, ProviderThrottled),
        (45033, ProviderThrottled),
        (40001, CredentialError),
        (60020, CredentialError),
        (93000, CredentialError),
        (81013, InvalidAddress),
        (45002, PermanentDeliveryError),
    ],
)
def test_errcodes(errcode: int, kind: type[Exception]) -> None:
    assert type(classify(errcode, "x", "WeCom")) is kind
