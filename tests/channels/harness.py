"""Each built-in provider against its local fake, behind one shape the contract suite drives.

A :class:`Harness` gives a sender pointed at a running fake, valid messages, a message
to an address the provider refuses, what the fake accepted (as message ids, read from
where each provider carries the id: Aliyun ``OutId``, the SMTP ``Message-ID``, FCM's
``data.message_id``; Twilio and WeCom carry none, so the test text holds it), and
outage controls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from engine.channels.providers.aliyun import AliyunSms
from engine.channels.providers.fcm import FcmPush
from engine.channels.providers.smtp import SmtpEmail
from engine.channels.providers.twilio import TwilioSms
from engine.channels.providers.wecom import WeComApp, WeComRobot
from engine.channels.senders import OutboundMessage
from tests.channels.fakes.aliyun import AliyunFake
from tests.channels.fakes.fcm import FcmFake
from tests.channels.fakes.http import FakeServer, serve
from tests.channels.fakes.smtp import Certificates, Inbox, SmtpServer
from tests.channels.fakes.twilio import TwilioFake
from tests.channels.fakes.wecom import WeComFake
from tests.conftest import free_port

TIMEOUT = 0.5
IDS = re.compile(r"msg_\w+")
PROVIDERS = ("aliyun", "twilio", "smtp", "wecom_app", "wecom_robot", "fcm")
#: Providers that refuse an address (the robot posts into a group and refuses no member).
REFUSING = tuple(name for name in PROVIDERS if name != "wecom_robot")


@dataclass
class Harness:
    name: str
    channel: str
    sender: Any
    make: Callable[[str], OutboundMessage]
    delivered: Callable[[], list[str]]
    outage: Any  # FakeServer or Inbox: .outage, .down_until, .clock
    wrong_credentials: Callable[[], Any]
    unreachable: Callable[[], Any]
    bad_address: OutboundMessage | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def track(self, sender: Any) -> Any:
        self.closers.append(sender.close)
        return sender


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@contextmanager
def aliyun() -> Iterator[Harness]:
    fake = AliyunFake()
    with serve(fake) as server:

        def sender(secret: str = "secret-test", url: str = server.url) -> AliyunSms:
            return AliyunSms("LTAI-test", secret, "悦品商城", url, timeout=TIMEOUT)

        def make(message_id: str, to: str = "+8613800138000") -> OutboundMessage:
            content = {
                "text": f"【悦品商城】您的验证码 {message_id[-6:]}，5分钟内有效。",
                "template_code": "SMS_100",
                "template_param": json.dumps({"code": message_id[-6:]}),
            }
            return OutboundMessage(message_id, "sms", to, content)

        harness = Harness(
            "aliyun",
            "sms",
            sender(),
            make,
            lambda: [s.out_id or "" for s in fake.sent],
            server,
            lambda: harness.track(sender(secret="wrong-secret")),
            lambda: harness.track(sender(url=closed_url())),
            make("msg_badnumber", to="12345"),
        )
        yield harness


@contextmanager
def twilio() -> Iterator[Harness]:
    fake = TwilioFake()
    with serve(fake) as server:

        def sender(token: str = fake.auth_token, url: str = server.url) -> TwilioSms:
            return TwilioSms(fake.account_sid, token, "+15005550006", url, timeout=TIMEOUT)

        def make(message_id: str, to: str = "+8613800138000") -> OutboundMessage:
            return OutboundMessage(message_id, "sms", to, {"text": f"Code {message_id}"})

        harness = Harness(
            "twilio",
            "sms",
            sender(),
            make,
            lambda: [IDS.findall(m["Body"])[0] for m in fake.sent],
            server,
            lambda: harness.track(sender(token="wrong-token")),
            lambda: harness.track(sender(url=closed_url())),
            make("msg_badnumber", to="+15005550001"),
        )
        yield harness


@contextmanager
def smtp() -> Iterator[Harness]:
    certificates = Certificates()
    inbox = Inbox()
    inbox.refuse_rcpt["nobody@example.com"] = (
        "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"
    )
    with SmtpServer(inbox, certificates, tls="starttls", require_starttls=True) as server:

        def sender(password: str = "s3cret%2Fpass", port: int = server.port) -> SmtpEmail:
            url = f"smtp+starttls://mailer:{password}@127.0.0.1:{port}"
            return SmtpEmail(
                url, "悦品商城 <news@shop.example.com>", TIMEOUT, certificates.client_context()
            )

        def make(message_id: str, to: str = "li@example.com") -> OutboundMessage:
            content = {"subject": "欢迎 Welcome", "html": f"<p>Hello {message_id}</p>"}
            return OutboundMessage(message_id, "email", to, content)

        def delivered() -> list[str]:
            return [r.message["Message-ID"].strip("<>").split("@")[0] for r in inbox.received]

        harness = Harness(
            "smtp",
            "email",
            sender(),
            make,
            delivered,
            inbox,
            lambda: harness.track(sender(password="wrong")),
            lambda: harness.track(sender(port=free_port())),
            make("msg_badaddress", to="nobody@example.com"),
        )
        yield harness


@contextmanager
def wecom_app() -> Iterator[Harness]:
    fake = WeComFake()
    with serve(fake) as server:

        def sender(secret: str = fake.secret, url: str = server.url) -> WeComApp:
            return WeComApp(fake.corp_id, secret, fake.agent_id, url, timeout=TIMEOUT)

        def make(message_id: str, to: str = "lilei") -> OutboundMessage:
            return OutboundMessage(message_id, "wecom", to, {"content": f"**新品** {message_id}"})

        harness = Harness(
            "wecom_app",
            "wecom",
            sender(),
            make,
            lambda: [IDS.findall(json.dumps(m))[0] for m in fake.sent],
            server,
            lambda: harness.track(sender(secret="wrong")),
            lambda: harness.track(sender(url=closed_url())),
            make("msg_badmember", to="nobody"),
        )
        yield harness


@contextmanager
def wecom_robot() -> Iterator[Harness]:
    fake = WeComFake()
    with serve(fake) as server:

        def sender(key: str = fake.robot_key, url: str = server.url) -> WeComRobot:
            return WeComRobot(f"{url}/cgi-bin/webhook/send?key={key}", timeout=TIMEOUT)

        def make(message_id: str, to: str = "lilei") -> OutboundMessage:
            return OutboundMessage(message_id, "wecom", to, {"content": f"**新品** {message_id}"})

        harness = Harness(
            "wecom_robot",
            "wecom",
            sender(),
            make,
            lambda: [IDS.findall(json.dumps(m))[0] for m in fake.robot_posts],
            server,
            lambda: harness.track(sender(key="wrong")),
            lambda: harness.track(sender(url=closed_url())),
        )
        yield harness


@contextmanager
def fcm() -> Iterator[Harness]:
    fake = FcmFake()
    fake.unregistered.add("token-uninstalled-app")
    with serve(fake) as server:
        fake.base_url = server.url

        def sender(account: dict[str, str] | None = None, url: str = server.url) -> FcmPush:
            return FcmPush(account or fake.service_account(), url, timeout=TIMEOUT)

        def wrong() -> FcmPush:
            other = FcmFake()  # a key Google does not know for this service account
            other.base_url = server.url
            return harness.track(sender(other.service_account()))

        def make(message_id: str, to: str = "token-of-lilei-phone") -> OutboundMessage:
            content = {
                "title": "新品上架",
                "body": "点击查看",
                "url": "https://shop.example.com/new",
            }
            return OutboundMessage(message_id, "push", to, content)

        harness = Harness(
            "fcm",
            "push",
            sender(),
            make,
            lambda: [m["data"]["message_id"] for m in fake.sent],
            server,
            wrong,
            lambda: harness.track(
                sender({**fake.service_account(), "token_uri": closed_url() + "/token"})
            ),
            make("msg_badtoken", to="token-uninstalled-app"),
        )
        yield harness


HARNESSES = {
    "aliyun": aliyun,
    "twilio": twilio,
    "smtp": smtp,
    "wecom_app": wecom_app,
    "wecom_robot": wecom_robot,
    "fcm": fcm,
}


@contextmanager
def harness_for(name: str) -> Iterator[Harness]:
    with ExitStack() as stack:
        harness = stack.enter_context(HARNESSES[name]())
        try:
            yield harness
        finally:
            for close in harness.closers:
                close()
            close_main = getattr(harness.sender, "close", None)
            if close_main is not None:
                close_main()


__all__ = ["PROVIDERS", "FakeServer", "Harness", "harness_for"]
