"""Decoding the lines of an event file: any JSON (:func:`decode_line`), or straight to
an :class:`~engine.events.Event` (:func:`plain_line`), both by msgspec; and an event
decoded once handed to another process in a form it reads back cheaply
(:func:`event_bytes`, :func:`event_from_bytes`).

Reading a file of millions of events is mostly decoding each line and checking the
message. :func:`plain_line` does both in one pass in C for the messages SDKs write,
and gives up (None) on anything else, which then takes the general path:
:func:`decode_line`, then :func:`~engine.events.parse_message`. So it decides nothing
on its own and need only agree with that path where it answers, which it does by
construction: one decoder reads every value both ways (no key is skipped unread: an
unknown one gives up), the message's own fields are strings with the models' limits
(anything else, such as a numeric id, gives up), and the timestamp passes the plain
path's own check.

Integers keep their exact value at any size, as the HTTP API's parser keeps them
(orjson would turn those beyond 64 bits into floats); NaN and infinities are refused.
Nesting is limited to MAX_DEPTH, counted exactly, so that whether a line is read
never depends on how deep the reading process's own stack happens to be.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from engine.events import MAX_ID, Event, plain_timestamp

#: Arrays and objects may nest this deep in a message.
MAX_DEPTH = 512

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
_Object = dict[str, Any]
_UNSET: Any = msgspec.UNSET
_Unset = msgspec.UnsetType


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    userId: _Id | None = None
    anonymousId: _Id | None = None
    messageId: _Id | None = None
    timestamp: str | _Unset = _UNSET
    context: _Object | _Unset = _UNSET
    # Fields of other kinds (ignored, as the models ignore them), and Segment's fields
    # the engine does not read: any JSON.
    event: Any = _UNSET
    name: Any = _UNSET
    properties: Any = _UNSET
    traits: Any = _UNSET
    groupId: Any = _UNSET
    previousId: Any = _UNSET
    integrations: Any = _UNSET
    sentAt: Any = _UNSET
    receivedAt: Any = _UNSET
    originalTimestamp: Any = _UNSET
    channel: Any = _UNSET
    version: Any = _UNSET
    writeKey: Any = _UNSET
    projectId: Any = _UNSET


class _Track(_Message, tag="track", kw_only=True):
    event: _Id
    properties: _Object | _Unset = _UNSET


class _Identify(_Message, tag="identify"):
    traits: _Object | _Unset = _UNSET


class _Page(_Message, tag="page"):
    name: str | None = None
    properties: _Object | _Unset = _UNSET


class _Screen(_Message, tag="screen"):
    name: str | None = None
    properties: _Object | _Unset = _UNSET


class _Group(_Message, tag="group", kw_only=True):
    groupId: _Id
    traits: _Object | _Unset = _UNSET


class _Alias(_Message, tag="alias", kw_only=True):
    userId: _Id  # required here
    previousId: _Id


_decode_plain = msgspec.json.Decoder(_Track | _Identify | _Page | _Screen | _Group | _Alias).decode
_decode_any = msgspec.json.Decoder().decode

#: A JSON string (whose brackets do not nest) or a bracket.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _too_deep(line: bytes) -> bool:
    """Whether arrays and objects nest more than MAX_DEPTH deep in ``line``."""
    if len(line) <= 2 * MAX_DEPTH or line.count(b"[") + line.count(b"{") <= MAX_DEPTH:
        return False  # too short, or too few brackets
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(line):
        token = match[0]
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def decode_line(line: bytes) -> Any:
    """The JSON value of ``line``. Raises msgspec.DecodeError when it is not JSON, or
    nests deeper than MAX_DEPTH."""
    if _too_deep(line):
        raise msgspec.DecodeError(f"JSON is nested more than {MAX_DEPTH} deep")
    return _decode_any(line)


class _Ids(msgspec.Struct):
    """The fields of a message that say whom it is about; any other is skipped unread."""

    type: Any = None
    userId: Any = None
    anonymousId: Any = None
    previousId: Any = None


_decode_ids = msgspec.json.Decoder(_Ids).decode

#: What :func:`identity_of` gives: (type, userId, anonymousId, previousId).
Ids = tuple[Any, Any, Any, Any]


def identity_of(line: bytes) -> Ids | None:
    """The type and ids of the message on ``line``, as JSON values, the rest of the line
    skipped rather than decoded, so checked less strictly than by :func:`decode_line`
    (a line it refuses may answer here); None when this cannot read the line."""
    try:
        found = _decode_ids(line)
    except (msgspec.DecodeError, RecursionError):  # a ValidationError too
        return None
    return found.type, found.userId, found.anonymousId, found.previousId


def plain_line(line: bytes) -> Event | None:
    """The event of ``line`` exactly as :func:`decode_line` and
    :func:`~engine.events.parse_message` make it; None when the line is anything but a
    plain message with a ``messageId`` (it may still be valid, or it is an error: the
    general path decides and says why)."""
    if _too_deep(line):
        return None
    try:
        message = _decode_plain(line)
    except msgspec.DecodeError:  # a ValidationError too
        return None
    user_id = message.userId
    anonymous_id = message.anonymousId
    message_id = message.messageId
    stamp = message.timestamp
    if (user_id is None and anonymous_id is None) or message_id is None or stamp is _UNSET:
        return None
    timestamp = plain_timestamp(stamp)
    if timestamp is None:
        return None
    context = message.context
    if context is _UNSET or not context:
        context = None
    kind = type(message)
    name: str | None = None
    properties: Any = {}
    traits: Any = {}
    previous_id: str | None = None
    if kind is _Track or kind is _Page or kind is _Screen:
        name = message.event if kind is _Track else message.name
        if message.properties is not _UNSET:
            properties = message.properties
    elif kind is _Identify or kind is _Group:
        if message.traits is not _UNSET:
            traits = message.traits
        elif kind is _Identify and context:  # RudderStack's SDKs send them in context only
            in_context = context.get("traits")
            if isinstance(in_context, dict):
                traits = in_context
    else:
        previous_id = message.previousId
    # Every field given, in order: the tuple is built as Event(...) builds it, without the
    # Python-level constructor (an event per line of a file).
    return _make_event(
        Event,
        (
            _KINDS[kind],
            name,
            message_id,
            user_id,
            anonymous_id,
            timestamp,
            properties,
            traits,
            previous_id,
            context,
        ),
    )


_make_event = tuple.__new__

_KINDS: dict[type[_Message], str] = {
    kind: str(kind.__struct_config__.tag)
    for kind in (_Track, _Identify, _Page, _Screen, _Group, _Alias)
}


_encode_event = msgspec.msgpack.Encoder().encode
_decode_event = msgspec.msgpack.Decoder(Event).decode
#: How every :func:`event_bytes` starts: a MessagePack array of the event's fields (under
#: sixteen, so one byte). No line of JSON starts so: the byte continues a UTF-8 sequence.
_EVENT_HEAD = 0x90 | len(Event._fields)
assert len(Event._fields) < 16


def event_bytes(event: Event) -> bytes | None:
    """``event`` as MessagePack for another process, which reads it back
    (:func:`event_from_bytes`) in a third of the time its line takes to decode; None
    when a value has no such form (of JSON's, an integer beyond 64 bits): hand over the
    line instead."""
    try:
        return _encode_event(event)
    except (OverflowError, TypeError, ValueError):  # the last two: values not from JSON
        return None


def is_event_bytes(data: bytes) -> bool:
    """Whether ``data`` is :func:`event_bytes` rather than a line of JSON."""
    return bool(data) and data[0] == _EVENT_HEAD


def event_from_bytes(data: bytes) -> Event:
    """The event :func:`event_bytes` gave ``data`` for, equal to it value for value (its
    time in UTC, lists as lists, integers and floats as they were)."""
    return _decode_event(data)
