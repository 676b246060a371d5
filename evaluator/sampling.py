"""Deterministic sampling by trace_id, with always-evaluate rules.

Every host and process makes the same decision for the same trace_id, so any number of
exporters and workers agree without talking to each other. Traces caught by an always-evaluate
rule form their own stratum (weight 1); the rest are sampled at `rate` and carry weight 1/rate,
so weighted rates over the sample are unbiased estimates over all traffic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from evaluator.errors import ConfigError
from evaluator.records import Trace

SegmentField = Literal["model", "provider", "prompt_version", "route"]
from evaluator.stage_timing import timed

MIN_RATE = 0.0
MAX_RATE = 1.0
_SCALE = float(2**64)


@dataclass(frozen=True)
class SampleDecision:
    sampled: bool
    reason: str
    """`error`, `negative_feedback`, `content_filter`, `attribute:KEY[=VALUE]`, `random` or
    `not_sampled`."""
    weight: float
    """Inverse-probability weight of a sampled trace (0 when not sampled)."""


def _check_rate(rate: float, what: str) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ConfigError(f"{what} must be between 0 and 1, got {rate}")


@dataclass(frozen=True)
class SegmentRate:
    """A random rate for one segment of traffic, e.g. model `gpt-4o` sampled at 0.05."""

    field: SegmentField
    value: str
    rate: float

    def __post_init__(self) -> None:
        _check_rate(self.rate, f"sample rate of {self.field}={self.value}")

    def matches(self, trace: Trace) -> bool:
        actual = trace.metadata.get("route") if self.field == "route" else getattr(trace, self.field)
        return actual is not None and str(actual) == self.value


@dataclass(frozen=True)
class AttributeRule:
    """Always evaluate traces whose metadata `key` equals `value` (or is present, when `value`
    is None); the key `tag` matches the trace's tags instead."""

    key: str
    value: str | None = None

    @property
    def reason(self) -> str:
        return f"attribute:{self.key}" + ("" if self.value is None else f"={self.value}")

    def matches(self, trace: Trace) -> bool:
        if self.key == "tag":
            return self.value in trace.tags if self.value is not None else bool(trace.tags)
        if self.key not in trace.metadata:
            return False
        return self.value is None or str(trace.metadata[self.key]) == self.value


@dataclass(frozen=True)
class SamplingPolicy:
    rate: float = 0.10
    always_on_error: bool = True
    always_on_negative_feedback: bool = True
    always_on_content_filter: bool = True
    segment_rates: tuple[SegmentRate, ...] = ()
    """Checked in order; the first segment a trace belongs to sets its random rate."""
    always_when: tuple[AttributeRule, ...] = ()

    def __post_init__(self) -> None:
        _check_rate(self.rate, "sample rate")

    def rate_for(self, trace: Trace) -> float:
        for segment in self.segment_rates:
            if segment.matches(trace):
                return segment.rate
        return self.rate


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
    for rule in policy.always_when:
        if rule.matches(trace):
            return rule.reason
    return None


@timed("sample")
def decide(trace: Trace, policy: SamplingPolicy) -> SampleDecision:
    reason = always_evaluate_reason(trace, policy)
    if reason is not None:
        return SampleDecision(True, reason, 1.0)
    rate = policy.rate_for(trace)
    if rate > 0 and trace_fraction(trace.trace_id) < rate:
        return SampleDecision(True, "random", 1.0 / rate)
    return SampleDecision(False, "not_sampled", 0.0)
