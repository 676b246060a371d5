"""Deterministic sampling by trace_id, with always-evaluate rules.

Every host and process makes the same decision for the same trace_id, so any number of
exporters and workers agree without talking to each other. Traces caught by an always-evaluate
rule form their own stratum (weight 1); the rest are sampled at `rate` and carry weight 1/rate,
so weighted rates over the sample are unbiased estimates over all traffic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from evaluator.errors import ConfigError
from evaluator.records import Trace
from evaluator.stage_timing import timed

MIN_RATE = 0.0
MAX_RATE = 1.0
_SCALE = float(2**64)


@dataclass(frozen=True)
class SampleDecision:
    sampled: bool
    reason: str
    """`error`, `negative_feedback`, `content_filter`, `random` or `not_sampled`."""
    weight: float
    """Inverse-probability weight of a sampled trace (0 when not sampled)."""


@dataclass(frozen=True)
class SamplingPolicy:
    rate: float = 0.10
    always_on_error: bool = True
    always_on_negative_feedback: bool = True
    always_on_content_filter: bool = True

    def __post_init__(self) -> None:
        if not MIN_RATE <= self.rate <= MAX_RATE:
            raise ConfigError(f"sample rate must be between 0 and 1, got {self.rate}")


def trace_fraction(trace_id: str) -> float:
    """Map a trace_id to a stable number in [0, 1): the first 8 bytes of its sha256."""
    digest = hashlib.sha256(trace_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def always_evaluate_reason(trace: Trace, policy: SamplingPolicy) -> str | None:
    if policy.always_on_error and trace.status == "error":
        return "error"
    if policy.always_on_negative_feedback and trace.feedback == "negative":
        return "negative_feedback"
    if policy.always_on_content_filter and trace.finish_reason == "content_filter":
        return "content_filter"
    return None


@timed("sample")
def decide(trace: Trace, policy: SamplingPolicy) -> SampleDecision:
    reason = always_evaluate_reason(trace, policy)
    if reason is not None:
        return SampleDecision(True, reason, 1.0)
    if policy.rate > 0 and trace_fraction(trace.trace_id) < policy.rate:
        return SampleDecision(True, "random", 1.0 / policy.rate)
    return SampleDecision(False, "not_sampled", 0.0)
