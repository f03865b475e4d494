"""How many SMS an SMS text costs, counted the way carriers split and bill it.

A text that fits the GSM 03.38 alphabet goes as GSM-7: 160 septets in one SMS, 153 per
part when concatenated (the user-data header takes the rest); characters of the extension
table (``€ [ ] { } | ^ ~ \\`` and form feed) take two septets and are never split across
parts. Any other character (any Chinese) makes the whole text UCS-2: 70 UTF-16 code units
in one SMS, 67 per part, a surrogate pair (an emoji) never split.

Mainland China's carriers bill every character as one whatever the script, 70 to one SMS
and 67 per part, the signature ``【...】`` included: :func:`count_segments` with
``ucs2=True`` counts that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

#: (one message, per part when concatenated), in septets or UTF-16 code units.
LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class SegmentCount:
    """The encoding a text needs, its length in that encoding's units, and its parts."""

    encoding: Literal["GSM-7", "UCS-2"]
    units: int
    segments: int


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 03.38 alphabet or its extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _unit_costs(text: str, encoding: str) -> list[int]:
    """The cost of each character, in the units of ``encoding``; a cost is never split."""
    if encoding == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def count_segments(text: str, ucs2: bool = False) -> SegmentCount:
    """How many parts ``text`` is sent (and billed) as; an empty text is one SMS.

    ``ucs2`` counts as if the text were UCS-2 whatever it holds (mainland China billing).
    """
    encoding: Literal["GSM-7", "UCS-2"] = "UCS-2" if ucs2 or not is_gsm7(text) else "GSM-7"
    single, per_part = LIMITS[encoding]
    costs = _unit_costs(text, encoding)
    units = sum(costs)
    if units <= single:
        return SegmentCount(encoding, units, 1)
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return SegmentCount(encoding, units, parts)
