"""Pydantic models of the journey and policy YAML files (journey-format sections 2, 3, 6).

The models are frozen and strict about keys: an unknown key is an error with a
"did you mean" hint. Values are checked as far as one file can check them
(durations, expressions, names); cross-references (targets, templates,
reachability) are the compiler's job. ``Journey.model_json_schema()`` is what
``journey schema`` prints for editors.
"""

from __future__ import annotations

import difflib
from datetime import time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.durations import parse_duration, parse_time_of_day
from engine.expressions import check_expression

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
DURATION_PATTERN = r"^([0-9]+[smhdw])+$"
UNKNOWN_KEYS_CONTEXT = "unknown_keys"


def _as_names(value: Any) -> Any:
    """``event`` may be one name or a list of names; always hand back a tuple."""
    if isinstance(value, str):
        return (value,)
    return value


def _non_empty_names(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("name at least one event")
    for name in value:
        if not name.strip():
            raise ValueError("an event name must not be empty")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {"type": "string", "pattern": DURATION_PATTERN, "examples": ["45m", "1h30m", "7d"]}
    ),
]
TimeOfDay = Annotated[
    time,
    BeforeValidator(parse_time_of_day),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}:\d{2}$", "examples": ["10:00"]}),
]
Expression = Annotated[str, AfterValidator(check_expression)]
EventNames = Annotated[
    tuple[str, ...],
    BeforeValidator(_as_names),
    AfterValidator(_non_empty_names),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    ),
]
Target = Annotated[str, Field(min_length=1, description="a step name, or `end`")]


class SpecModel(BaseModel):
    """Frozen, and strict about keys: every unknown key is reported with a hint.

    With a validation context holding a list under ``unknown_keys``, unknown keys
    are recorded there as ``(mapping, key, hint)`` and dropped, so the rest of the
    document is still validated and every error is reported in one pass. Without
    one, the first unknown key fails validation.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        allowed = set()
        for name, field_info in cls.model_fields.items():
            allowed.add(field_info.alias or name)
        unknown = [key for key in data if key not in allowed]
        if not unknown:
            return data
        sink = info.context.get(UNKNOWN_KEYS_CONTEXT) if isinstance(info.context, dict) else None
        for key in unknown:
            hint = unknown_key_message(str(key), sorted(allowed))
            if sink is None:
                raise PydanticCustomError("unknown_key", hint)
            sink.append((data, str(key), hint))
        return {key: value for key, value in data.items() if key in allowed}


def unknown_key_message(key: str, allowed: list[str]) -> str:
    """``unknown key 'chanel' (did you mean 'channel'?)``, or the list of valid keys."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r}; expected one of: {', '.join(allowed)}"


class Trigger(SpecModel):
    """What starts a run: a named event, optionally filtered."""

    event: EventNames
    where: Expression | None = None


class EventRule(SpecModel):
    """An event (one name or several) with an optional condition."""

    event: EventNames
    where: Expression | None = None


class Goal(SpecModel):
    """Conversion: the first matching event within ``within`` of entry."""

    event: EventNames
    where: Expression | None = None
    within: Duration


ReEntry = Annotated[
    str,
    Field(
        pattern=r"^(never|always|after ([0-9]+[smhdw])+)$",
        description="never | always | after <duration>",
    ),
]


class Entry(SpecModel):
    """Who may enter again, and when."""

    re_entry: ReEntry = "never"

    @field_validator("re_entry")
    @classmethod
    def _positive_delay(cls, value: str) -> str:
        if value.startswith("after "):
            parse_duration(value.removeprefix("after ").strip())
        return value

    @property
    def re_entry_after(self) -> timedelta | None:
        """The delay for ``after D``; None for ``never`` and ``always``."""
        if self.re_entry.startswith("after "):
            return parse_duration(self.re_entry.removeprefix("after ").strip())
        return None


class WaitUntil(SpecModel):
    """Resume at the next wall-clock time in the user's time zone."""

    until: TimeOfDay


def _wait_kind(value: Any) -> str:
    return "wait-until" if isinstance(value, dict | WaitUntil) else "wait-duration"


WaitSpec = Annotated[
    Annotated[Duration, Tag("wait-duration")] | Annotated[WaitUntil, Tag("wait-until")],
    Discriminator(_wait_kind),
]


class WaitStep(SpecModel):
    """``wait: 1h30m`` or ``wait: {until: "10:00"}``, then ``next``."""

    wait: WaitSpec
    next: Target
    description: str | None = None


class WaitForSpec(SpecModel):
    """The awaited event and how long to wait for it."""

    event: EventNames
    where: Expression | None = None
    timeout: Duration


class WaitForStep(SpecModel):
    """Wait for an event; go to ``on_event`` when it comes, ``on_timeout`` when it doesn't."""

    wait_for: WaitForSpec
    on_event: Target
    on_timeout: Target
    description: str | None = None


InlineParts = dict[str, str]


class SendSpec(SpecModel):
    """One message: a template (or inline content) on a channel, with fallbacks."""

    channel: str = Field(min_length=1)
    template: str | None = Field(default=None, min_length=1)
    content: dict[str, str | InlineParts] | None = None
    fallback: tuple[str, ...] = ()
    ignore_frequency_cap: bool = False

    @model_validator(mode="after")
    def _template_or_content(self) -> SendSpec:
        if (self.template is None) == (self.content is None):
            raise ValueError("a send needs exactly one of 'template' or 'content'")
        return self


class SendStep(SpecModel):
    """Render and dispatch one message, then go to ``next`` whatever the outcome."""

    send: SendSpec
    next: Target
    description: str | None = None


class BranchCase(SpecModel):
    """``{when: X, next: A}``: taken when X is true."""

    when: Expression
    next: Target


class BranchElse(SpecModel):
    """``{else: B}``: taken when no case matched."""

    else_: Target = Field(alias="else")


def _branch_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "branch-else" if "else" in value and "when" not in value else "branch-case"
    return "branch-case" if isinstance(value, BranchCase) else "branch-else"


BranchItem = Annotated[
    Annotated[BranchCase, Tag("branch-case")] | Annotated[BranchElse, Tag("branch-else")],
    Discriminator(_branch_kind),
]


class BranchStep(SpecModel):
    """The first true ``when`` wins; ``else`` is required and comes last."""

    branch: list[BranchItem] = Field(min_length=1)
    description: str | None = None


class SplitArm(SpecModel):
    """One arm of a random split."""

    weight: PositiveInt
    next: Target


class SplitStep(SpecModel):
    """A deterministic weighted random split per (user, journey, step)."""

    split: list[SplitArm] = Field(min_length=1)
    description: str | None = None


STEP_KINDS = ("wait", "wait_for", "send", "branch", "split")
STEP_TAGS = {kind: f"{kind}-step" for kind in STEP_KINDS}
#: Names pydantic puts in error locations for union members; they are not keys of the file.
UNION_TAGS = frozenset(
    {*STEP_TAGS.values(), "wait-duration", "wait-until", "branch-case", "branch-else"}
)


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kinds = [kind for kind in STEP_KINDS if kind in value]
        return STEP_TAGS[kinds[0]] if len(kinds) == 1 else None
    for kind in STEP_KINDS:
        if hasattr(value, kind):
            return STEP_TAGS[kind]
    return None


Step = Annotated[
    Annotated[WaitStep, Tag(STEP_TAGS["wait"])]
    | Annotated[WaitForStep, Tag(STEP_TAGS["wait_for"])]
    | Annotated[SendStep, Tag(STEP_TAGS["send"])]
    | Annotated[BranchStep, Tag(STEP_TAGS["branch"])]
    | Annotated[SplitStep, Tag(STEP_TAGS["split"])],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one of: " + ", ".join(STEP_KINDS),
    ),
]


class Journey(SpecModel):
    """One journey file: a trigger, entry rules, exits, a goal and named steps."""

    id: str = Field(pattern=NAME_PATTERN, description="unique id, [a-z][a-z0-9_]*")
    name: str = Field(min_length=1)
    description: str | None = None
    trigger: Trigger
    entry: Entry = Entry()
    exit_when: list[EventRule] = Field(default_factory=list)
    goal: Goal | None = None
    start: Target
    steps: dict[str, Step] = Field(min_length=1)


class QuietHours(SpecModel):
    """``[start, end)`` in the user's time zone, wrapping midnight when start > end."""

    start: TimeOfDay
    end: TimeOfDay
    channels: tuple[str, ...] | None = None
    action: Literal["defer", "skip"] = "defer"


class FrequencyCap(SpecModel):
    """At most ``limit`` messages actually sent per rolling ``per`` window."""

    channel: str = Field(min_length=1, description="a channel name, or `any`")
    limit: int = Field(ge=0)
    per: Duration


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like 'Asia/Shanghai')"
        ) from None
    return value


class Policies(SpecModel):
    """``journeys/policies.yaml``: rules applied before every send, across journeys."""

    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    quiet_hours: QuietHours | None = None
    frequency_caps: list[FrequencyCap] = Field(default_factory=list)
    opt_in_channels: tuple[str, ...] = ()
