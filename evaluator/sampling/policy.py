"""Deterministic sampling by trace_id, with always-evaluate rules.

Every host and process makes the same decision for the same trace_id, so any number of
exporters and workers agree without talking to each other. Traces caught by an always-evaluate
rule form their own stratum (weight 1) and are evaluated by every rubric; the rest are sampled
at a random rate and carry weight 1/rate, so weighted rates over the sample are unbiased
estimates over all traffic.

A random rate comes from, in order: the first segment the trace belongs to (a segment may be
limited to one rubric), the rubric's own rate, the base rate. When rubrics sample at different
rates, a trace is sent if any of them picks it (at the highest rate); each rubric then
evaluates it only if its own rate picks it too, with weight 1/its rate (`for_rubric`). The same
trace_fraction decides all of them, so a rubric's sample is exactly what its rate alone gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from evaluator.core.errors import ConfigError
from evaluator.core.records import Trace
from evaluator.core.stage_timing import timed
from evaluator.core.work import NO_RUBRIC_RATES, NOT_SAMPLED, SampleDecision, trace_fraction

SegmentField = Literal["model", "provider", "prompt_version", "route"]

MIN_RATE = 0.0
MAX_RATE = 1.0


def _check_rate(rate: float, what: str) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ConfigError(f"{what} must be between 0 and 1, got {rate}")


@dataclass(frozen=True)
class SegmentRate:
    """A random rate for one segment of traffic, e.g. model `gpt-4o` sampled at 0.05; with
    `rubric`, for that rubric only."""

    field: SegmentField
    value: str
    rate: float
    rubric: str | None = None

    def __post_init__(self) -> None:
        _check_rate(self.rate, f"sample rate of {self.field}={self.value}")

    def matches(self, trace: Trace) -> bool:
        actual = trace.metadata.get("route") if self.field == "route" else getattr(trace, self.field)
        return actual is not None and str(actual) == self.value

    def scaled(self, factor: float) -> SegmentRate:
        return SegmentRate(self.field, self.value, self.rate * factor, self.rubric)


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
    rubric_rates: Mapping[str, float] = field(default_factory=dict)
    """A random rate per rubric criterion (e.g. `hallucination`), instead of `rate`."""
    daily_budget_usd: float | None = None
    """Judge spend per UTC day that producers pace the random rates to (evaluator.sampling.spend)."""

    def __post_init__(self) -> None:
        _check_rate(self.rate, "sample rate")
        for criterion, rate in self.rubric_rates.items():
            _check_rate(rate, f"sample rate of rubric {criterion}")
        if self.daily_budget_usd is not None and self.daily_budget_usd < 0:
            raise ConfigError(f"the daily judge budget (daily_budget_usd, EVALUATOR_DAILY_BUDGET_USD) "
                              f"must be 0 or more USD, got {self.daily_budget_usd:g}")

    @cached_property
    def named_rubrics(self) -> frozenset[str]:
        """Rubrics with a rate of their own (in rubric_rates or a rubric's segment)."""
        return frozenset(self.rubric_rates) | {s.rubric for s in self.segment_rates if s.rubric}

    def rate_for(self, trace: Trace, criterion: str | None = None) -> float:
        """The random rate of `trace` for one rubric (None: for rubrics without their own)."""
        for segment in self.segment_rates:
            if segment.rubric in (None, criterion) and segment.matches(trace):
                return segment.rate
        return self.rubric_rates.get(criterion, self.rate) if criterion else self.rate

    def scaled(self, factor: float) -> SamplingPolicy:
        """Every random rate times `factor` (0..1); the always-evaluate rules are untouched."""
        return SamplingPolicy(
            rate=self.rate * factor,
            always_on_error=self.always_on_error,
            always_on_negative_feedback=self.always_on_negative_feedback,
            always_on_content_filter=self.always_on_content_filter,
            segment_rates=tuple(s.scaled(factor) for s in self.segment_rates),
            always_when=self.always_when,
            rubric_rates={c: r * factor for c, r in self.rubric_rates.items()},
            daily_budget_usd=self.daily_budget_usd,
        )


class ScaledPolicies:
    """`policy.scaled(scale)`, built once per (policy, scale), for decisions on a hot path."""

    def __init__(self) -> None:
        self._key: tuple[SamplingPolicy, float] | None = None
        self._scaled = SamplingPolicy()

    def get(self, policy: SamplingPolicy, scale: float) -> SamplingPolicy:
        if scale >= 1.0:
            return policy
        if self._key != (policy, scale):
            self._key, self._scaled = (policy, scale), policy.scaled(scale)
        return self._scaled


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
    own = _rubric_rates(trace, policy, rate) if policy.named_rubrics else NO_RUBRIC_RATES
    highest = max(rate, *own.values()) if own else rate
    if highest > 0 and trace_fraction(trace.trace_id) < highest:
        return SampleDecision(True, "random", 1.0 / highest, rate, own)
    return SampleDecision(False, NOT_SAMPLED, 0.0)


def _rubric_rates(trace: Trace, policy: SamplingPolicy, rate: float) -> dict[str, float]:
    """The rubrics whose rate for this trace differs from `rate`."""
    rates = {criterion: policy.rate_for(trace, criterion) for criterion in policy.named_rubrics}
    return {criterion: value for criterion, value in rates.items() if value != rate}
