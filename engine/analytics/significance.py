"""Confidence intervals and significance tests for conversion rates (A/B arms).

Wilson score intervals stay inside [0, 1] and behave with small samples and rates near
0 or 1, where the normal approximation does not. Arms are compared with the pooled
two-proportion z-test (two-sided). The standard library's ``NormalDist`` is all it needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

ALPHA = 0.05
TEST_NAME = "two-proportion z-test (pooled, two-sided)"
_NORMAL = NormalDist()


def wilson_interval(successes: int, trials: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The Wilson score interval of ``successes / trials`` at confidence ``1 - alpha``;
    (0, 1) when there are no trials (nothing is known)."""
    if trials <= 0:
        return (0.0, 1.0)
    z = _NORMAL.inv_cdf(1 - alpha / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    margin = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - margin), min(1.0, centre + margin))


@dataclass(frozen=True)
class Comparison:
    """The z-test of one proportion against another."""

    z: float | None  # None: not testable (an arm without runs, or no variance at all)
    p_value: float | None

    def significant(self, alpha: float) -> bool:
        return self.p_value is not None and self.p_value < alpha


def two_proportion_z_test(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int
) -> Comparison:
    """Whether rate A differs from rate B (pooled standard error, two-sided p-value)."""
    if trials_a <= 0 or trials_b <= 0:
        return Comparison(None, None)
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    if variance <= 0:
        return Comparison(None, None)  # every run converted, or none did: no difference
    z = (successes_a / trials_a - successes_b / trials_b) / math.sqrt(variance)
    return Comparison(z, 2 * (1 - _NORMAL.cdf(abs(z))))
