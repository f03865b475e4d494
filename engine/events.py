"""Segment-spec messages (track, identify, page, screen, alias, group), validated.

The same JSON is accepted everywhere: the HTTP API, event files and tests
(journey-format section 7). A malformed message raises
:class:`~engine.errors.InvalidMessage` naming the field; unknown extra fields
(``context``, ``integrations``, ``sentAt``...) are allowed, as Segment allows them.

The pydantic models are the definition. Nearly every message an SDK sends is plain
(string ids, an ISO-8601 timestamp, objects where objects belong), and checking that
by hand is several times cheaper than a validator pass, which matters for files of
millions of events; anything else goes through the models, which produce the same
result or the error naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from engine.errors import InvalidMessage
from engine.values import value

MESSAGE_TYPES = ("track", "identify", "page", "screen", "alias", "group")


def _utc(value: datetime) -> datetime:
    """A timestamp without an offset is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError("out of range once converted to UTC (years 1 to 9999)") from None


Id = Annotated[str, Field(min_length=1, max_length=512)]
Timestamp = Annotated[datetime, AfterValidator(_utc)]

# Text a database cannot hold: NUL (PostgreSQL refuses it in text) and UTF-16 surrogates
# without a partner (JSON's "\ud800", or the bytes ED A0 80: not Unicode, not storable).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with unstorable characters written as ``\\uXXXX``, safe to log and answer."""
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def unstorable_text(value: Any) -> tuple[str, str] | None:
    """The first string or key in a JSON value that no store can hold, as
    ``(dotted field path, why)``, or None when every string is storable."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if (found := _UNSTORABLE.search(item)) is not None:
                return printable(path), _why(found.group())
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                where = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and (found := _UNSTORABLE.search(key)) is not None:
                    return printable(where), "the key " + _why(found.group())
                children.append((where, child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            indexed = [(f"{path}.{i}" if path else str(i), child) for i, child in enumerate(item)]
            stack.extend(reversed(indexed))
    return None


def _why(character: str) -> str:
    if character == "\x00":
        return "contains a NUL character (\\u0000), which cannot be stored"
    return f"contains an unpaired UTF-16 surrogate (\\u{ord(character):04x}), which is not text"


class _Message(BaseModel):
    # SDKs may send numeric ids: they are the same user as their decimal text.
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    userId: Id | None = None
    anonymousId: Id | None = None
    messageId: Id | None = None
    timestamp: Timestamp | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _someone(self) -> _Message:
        if self.userId is None and self.anonymousId is None:
            raise ValueError("userId or anonymousId is required")
        return self


class Track(_Message):
    type: Literal["track"]
    event: str = Field(min_length=1, max_length=512)
    properties: dict[str, Any] = Field(default_factory=dict)


class Identify(_Message):
    type: Literal["identify"]
    traits: dict[str, Any] = Field(default_factory=dict)


class Page(_Message):
    type: Literal["page"]
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class Screen(_Message):
    type: Literal["screen"]
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class Group(_Message):
    type: Literal["group"]
    groupId: Id
    traits: dict[str, Any] = Field(default_factory=dict)


class Alias(_Message):
    type: Literal["alias"]
    userId: Id
    previousId: Id


Message = Annotated[Track | Identify | Page | Screen | Group | Alias, Field(discriminator="type")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Message)


@value
class Event(NamedTuple):
    """A validated message, in the shape the engine works with."""

    type: str
    name: str | None
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    timestamp: datetime
    properties: dict[str, Any]
    traits: dict[str, Any]
    previous_id: str | None = None
    context: dict[str, Any] | None = None

    def data(self) -> dict[str, Any]:
        """The event as conditions and templates see it (``trigger``/``event``)."""
        return {
            "type": self.type,
            "event": self.name if self.type == "track" else None,
            "name": self.name,
            "properties": self.properties,
            "traits": self.traits,
            "timestamp": self.timestamp,
            "messageId": self.message_id,
            "userId": self.user_id,
            "anonymousId": self.anonymous_id,
            "context": self.context or {},
        }


def _field(loc: tuple[str | int, ...]) -> str:
    parts = [str(p) for p in loc if str(p) not in MESSAGE_TYPES]
    return ".".join(parts)


MAX_ID = 512
#: ISO-8601 as SDKs write it; both pydantic and ``datetime.fromisoformat`` read it alike.
_plain_timestamp = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})?"
).fullmatch
_ABSENT: Any = object()
#: An object the message does not have (each event gets an empty dict of its own).
_NOTHING: Any = object()


def plain_timestamp(stamp: str) -> datetime | None:
    """``stamp`` in UTC when it is an ISO-8601 time as SDKs write it (which the models
    read alike), else None (the models decide)."""
    if _plain_timestamp(stamp) is None:
        return None
    try:
        timestamp = datetime.fromisoformat(stamp)
        if timestamp.tzinfo is not UTC:  # in UTC already, _utc would return it as it is
            timestamp = _utc(timestamp)  # ValueError when out of range in UTC
    except ValueError:
        return None
    return timestamp


def _plain_id(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_ID


def _plain_object(value: Any) -> bool:
    """Whether ``value`` is a JSON object: a dict with string keys."""
    if type(value) is not dict:
        return False
    for key in value:  # noqa: SIM110 - a plain loop is twice as fast as all() here
        if type(key) is not str:
            return False
    return True


def _plain_message(
    raw: dict[str, Any], default_message_id: str | None, default_timestamp: datetime | None
) -> Event | None:
    """The event for a plain message, exactly as the models would build it; None for any
    message that is not plain (it may still be valid), which the models then decide.

    The event holds the message's own objects (``properties``, ``traits``...), as
    decoded JSON is handed over and never changed afterwards.
    """
    # The checks of _plain_id are written out where ids are read: this runs once per
    # event of a file, and a call per field was a fifth of its cost.
    get = raw.get
    user_id = get("userId")
    anonymous_id = get("anonymousId")
    if user_id is None:
        if anonymous_id is None:
            return None
    elif type(user_id) is not str or not 0 < len(user_id) <= MAX_ID:
        return None
    if anonymous_id is not None and (
        type(anonymous_id) is not str or not 0 < len(anonymous_id) <= MAX_ID
    ):
        return None
    message_id = get("messageId")
    if message_id is None:
        message_id = default_message_id
        if message_id is None:
            return None
    elif type(message_id) is not str or not 0 < len(message_id) <= MAX_ID:
        return None
    stamp = get("timestamp")
    if type(stamp) is str:
        timestamp = plain_timestamp(stamp)
        if timestamp is None:
            return None
    elif stamp is None and default_timestamp is not None:
        timestamp = _utc(default_timestamp)
    else:
        return None
    context = get("context", _ABSENT)
    if context is _ABSENT:
        context = None
    elif not _plain_object(context):
        return None
    kind = get("type")
    name: str | None = None
    properties: Any = _NOTHING
    traits: Any = _NOTHING
    previous_id: str | None = None
    # Each kind checks the one object it reads; the other stays the empty default.
    if kind == "track":
        name = get("event")
        if type(name) is not str or not 0 < len(name) <= MAX_ID:
            return None
        properties = get("properties", _NOTHING)
        if properties is not _NOTHING and not _plain_object(properties):
            return None
    elif kind == "identify":
        if "traits" in raw:
            traits = raw["traits"]
        elif context:  # RudderStack's SDKs send identify traits in context.traits only
            context_traits = context.get("traits")
            if isinstance(context_traits, dict):
                traits = context_traits
        if traits is not _NOTHING and not _plain_object(traits):
            return None
    elif kind == "page" or kind == "screen":
        name = get("name")
        if name is not None and type(name) is not str:
            return None
        properties = get("properties", _NOTHING)
        if properties is not _NOTHING and not _plain_object(properties):
            return None
    elif kind == "group":
        if not _plain_id(get("groupId")):
            return None
        traits = get("traits", _NOTHING)
        if traits is not _NOTHING and not _plain_object(traits):
            return None
    elif kind == "alias":
        previous_id = get("previousId")
        if user_id is None or not _plain_id(previous_id):
            return None
    else:
        return None
    if properties is _NOTHING:
        properties = {}
    if traits is _NOTHING:
        traits = {}
    return Event(
        kind,
        name,
        message_id,
        user_id,
        anonymous_id,
        timestamp,
        properties,
        traits,
        previous_id,
        context or None,
    )


def parse_message(
    raw: Any,
    *,
    default_message_id: str | None = None,
    default_timestamp: datetime | None = None,
) -> Event:
    """Validate one Segment message.

    A message without ``messageId`` gets ``default_message_id``; without
    ``timestamp``, ``default_timestamp`` (the time it was received). When no
    default is given the field is required.
    """
    if type(raw) is dict:
        plain = _plain_message(raw, default_message_id, default_timestamp)
        if plain is not None:
            return plain
    return parse_message_with_models(
        raw, default_message_id=default_message_id, default_timestamp=default_timestamp
    )


def parse_message_with_models(
    raw: Any,
    *,
    default_message_id: str | None = None,
    default_timestamp: datetime | None = None,
) -> Event:
    """:func:`parse_message` by the pydantic models alone, for any message: the
    definition that the shortcut for plain messages follows."""
    if not isinstance(raw, dict):
        raise InvalidMessage("", "a message must be a JSON object")
    kind = raw.get("type")
    if kind not in MESSAGE_TYPES:
        if kind is None:
            raise InvalidMessage("type", "missing; expected one of " + ", ".join(MESSAGE_TYPES))
        raise InvalidMessage(
            "type", f"unknown type {kind!r}; expected one of " + ", ".join(MESSAGE_TYPES)
        )
    try:
        message = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = []
        first = ""
        for error in exc.errors():
            where = _field(error["loc"])
            msg = str(error["msg"]).removeprefix("Value error, ")
            if not where and "userId or anonymousId" in msg:
                where = "userId"
            first = first or where
            problems.append(f"{where}: {msg}" if where else msg)
        raise InvalidMessage(first, "; ".join(problems)) from None
    message_id = message.messageId or default_message_id
    if message_id is None:
        raise InvalidMessage("messageId", "required")
    timestamp = message.timestamp or default_timestamp
    if timestamp is None:
        raise InvalidMessage("timestamp", "required (ISO-8601, e.g. 2026-03-01T10:00:00Z)")
    name: str | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    previous_id: str | None = None
    if isinstance(message, Track):
        name, properties = message.event, message.properties
    elif isinstance(message, Page | Screen):
        name, properties = message.name, message.properties
    elif isinstance(message, Identify | Group):
        traits = message.traits
        if isinstance(message, Identify) and "traits" not in raw:
            # RudderStack's SDKs send identify traits in context.traits only.
            context_traits = message.context.get("traits")
            traits = context_traits if isinstance(context_traits, dict) else traits
    else:
        previous_id = message.previousId
    return Event(
        type=raw["type"],
        name=name,
        message_id=message_id,
        user_id=message.userId,
        anonymous_id=message.anonymousId,
        timestamp=_utc(timestamp),
        properties=properties,
        traits=traits,
        previous_id=previous_id,
        context=message.context or None,
    )
