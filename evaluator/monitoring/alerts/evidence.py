"""How sure we are that a rate or a mean crossed a threshold: weighted Wilson intervals.

Evaluations are a weighted sample of the app's traffic (errors and negative feedback are always
evaluated, the rest at 5-15%), so a rate is the Horvitz-Thompson ratio sum(w*x) / sum(w), and
its interval uses Kish's effective sample size n_eff = (sum w)^2 / sum(w^2) in place of n.

Mean scores (0..1) use the same interval: among variables in [0, 1] with a given mean, the
Bernoulli one has the largest variance, so the Wilson interval of a mean score is conservative.

A drop "by more than d" compares two windows with MOVER (Zou & Donner 2008, Newcombe's hybrid
score method for a difference): the lower bound of (1 - d) * previous - current, built from the
two Wilson intervals. It fires only when that bound is above zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Estimate:
    """A weighted rate or mean with its two-sided interval."""

    value: float
    low: float
    high: float
    n: int
    n_effective: float


def z_value(confidence: float) -> float:
    """Two-sided normal quantile: 1.96 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of successes / n; n may be fractional (an effective size)."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(successes / n, 0.0), 1.0)
    z = z_value(confidence)
    z2 = z * z
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    low = 0.0 if p == 0.0 else max(0.0, center - half)  # exact ends, not rounding noise
    high = 1.0 if p == 1.0 else min(1.0, center + half)
    return low, high


def weighted_estimate(n: int, sum_w: float, sum_w2: float, sum_wx: float,
                      confidence: float = 0.95) -> Estimate | None:
    """The weighted rate (or mean of values in [0, 1]) with its Wilson interval; None if empty."""
    if n <= 0 or sum_w <= 0 or sum_w2 <= 0:
        return None
    value = min(max(sum_wx / sum_w, 0.0), 1.0)
    n_effective = sum_w * sum_w / sum_w2
    low, high = wilson(value * n_effective, n_effective, confidence)
    return Estimate(value, low, high, n, n_effective)


def drop_lower_bound(previous: Estimate, current: Estimate, max_drop: float) -> float:
    """Lower confidence bound of (1 - max_drop) * previous - current (MOVER).

    Above zero means the current value is, with confidence, more than `max_drop` (relative)
    below the previous one.
    """
    scale = 1 - max_drop
    difference = scale * previous.value - current.value
    return difference - math.hypot(scale * (previous.value - previous.low),
                                   current.high - current.value)
