"""Rates as operators write them: ``10`` (per second), ``10/s``, ``30/min``, ``1000/h``.

A limit setting may hold several, comma-separated (``30/min,1000/h``): every one applies.
A rate of ``n`` per period also allows a burst of ``n`` at once, as providers count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PERIODS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([a-z]+))?\s*$")


@dataclass(frozen=True)
class Rate:
    """``count`` messages per ``period`` seconds."""

    count: float
    period: float = 1.0

    def __post_init__(self) -> None:
        if self.count <= 0 or self.period <= 0:
            raise ValueError("a rate needs a positive count and period")

    @property
    def interval(self) -> float:
        """Seconds between two messages at the steady rate."""
        return self.period / self.count

    @property
    def burst(self) -> int:
        """How many may go at once after a quiet spell (at least one)."""
        return max(1, int(self.count))

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}.get(self.period)
        count = f"{self.count:g}"
        return f"{count}/{unit}" if unit else f"{count}/{self.period:g}s"


def parse_rates(text: str) -> tuple[Rate, ...]:
    """``"30/min,1000/h"`` → two rates; raises ValueError naming the bad part."""
    rates = []
    for part in text.split(","):
        if not part.strip():
            continue
        match = _RATE.match(part.lower())
        if match is None or (match.group(2) and match.group(2) not in PERIODS):
            raise ValueError(
                f"{part.strip()!r} is not a rate; write e.g. 10, 10/s, 30/min or 1000/h"
            )
        count = float(match.group(1))
        if count <= 0:
            raise ValueError(f"{part.strip()!r}: a rate must be positive")
        rates.append(Rate(count, PERIODS[match.group(2) or "s"]))
    return tuple(rates)
