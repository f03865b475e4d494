"""WeCom's server API as far as messages go: gettoken, message/send, and a group robot.

Tokens expire (``expire_tokens()`` ages them all: the next call gets 42001), unknown
tokens are 40014; a wrong secret is 40001; an unknown member alone is 81013; a message
to a member past 30 a minute is answered ``ok`` and silently dropped, as WeCom does,
and counted in ``dropped``. The robot checks its ``key`` (93000) and allows 20 a minute
(45009).
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.channels.fakes.http import Reply, Request

CONTENT_FIELDS = {
    "text": ("content",),
    "markdown": ("content",),
    "textcard": ("title", "description", "url"),
}


@dataclass
class WeComFake:
    corp_id: str = "ww-test-corp"
    secret: str = "app-secret"
    agent_id: int = 1000002
    members: set[str] = field(default_factory=lambda: {"lilei", "hanmeimei"})
    robot_key: str = "robot-key-1"
    member_limit: int = 30
    robot_limit: int = 20
    tokens: dict[str, float] = field(default_factory=dict)
    token_calls: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    robot_posts: list[dict[str, Any]] = field(default_factory=list)
    per_member: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    robot_times: list[float] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    outage_reply = Reply(200, {"errcode": -1, "errmsg": "system busy"})

    def expire_tokens(self) -> None:
        self.tokens = {token: 0.0 for token in self.tokens}

    def __call__(self, request: Request) -> Reply:
        if request.path == "/cgi-bin/gettoken":
            return self._gettoken(request)
        if request.path == "/cgi-bin/message/send":
            return self._send(request)
        if request.path == "/cgi-bin/webhook/send":
            return self._robot(request)
        return Reply(404, b"not found")

    def _gettoken(self, request: Request) -> Reply:
        self.token_calls += 1
        if request.query.get("corpid") != self.corp_id:
            return Reply(200, {"errcode": 40013, "errmsg": "invalid corpid"})
        if request.query.get("corpsecret") != self.secret:
            return Reply(200, {"errcode": 40001, "errmsg": "invalid credential"})
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + 7200
        return Reply(200, {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

    def _send(self, request: Request) -> Reply:
        token = request.query.get("access_token")
        if not token:
            return Reply(200, {"errcode": 41001, "errmsg": "access_token missing"})
        if token not in self.tokens:
            return Reply(200, {"errcode": 40014, "errmsg": "invalid access_token"})
        if self.tokens[token] <= time.time():
            return Reply(200, {"errcode": 42001, "errmsg": "access_token expired"})
        body = request.json()
        if body.get("agentid") != self.agent_id:
            return Reply(200, {"errcode": 40056, "errmsg": "invalid agentid"})
        msgtype = body.get("msgtype")
        if msgtype not in CONTENT_FIELDS:
            return Reply(200, {"errcode": 40008, "errmsg": "invalid message type"})
        part = body.get(msgtype) or {}
        if any(not part.get(name) for name in CONTENT_FIELDS[msgtype]):
            return Reply(200, {"errcode": 44004, "errmsg": "empty content"})
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        valid = [u for u in users if u.lower() in self.members]
        if not valid:
            return Reply(200, {"errcode": 81013, "errmsg": "user & party & tag all invalid"})
        now = self.clock()
        for user in valid:
            recent = [t for t in self.per_member[user] if t > now - 60]
            self.per_member[user] = [*recent, now]
            if len(recent) >= self.member_limit:
                self.dropped.append(body)
            else:
                self.sent.append(body)
        invalid = "|".join(u.lower() for u in users if u not in valid)
        answer = {"errcode": 0, "errmsg": "ok", "invaliduser": invalid, "invalidparty": ""}
        answer |= {"invalidtag": "", "unlicenseduser": "", "msgid": secrets.token_hex(8)}
        return Reply(200, answer)

    def _robot(self, request: Request) -> Reply:
        if request.query.get("key") != self.robot_key:
            return Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
        now = self.clock()
        self.robot_times = [t for t in self.robot_times if t > now - 60]
        if len(self.robot_times) >= self.robot_limit:
            return Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
        body = request.json()
        self.robot_times.append(now)
        if body.get("msgtype") not in ("text", "markdown", "news"):
            return Reply(200, {"errcode": 40008, "errmsg": "invalid message type"})
        self.robot_posts.append(body)
        return Reply(200, {"errcode": 0, "errmsg": "ok"})
