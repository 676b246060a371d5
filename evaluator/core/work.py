"""A sampled trace on its way to the judge (WorkItem), with why and with what weight it was
sampled (SampleDecision). Producers make them (evaluator.sampling decides), the queue carries
them, the worker judges them.

`trace_fraction` maps a trace_id to a stable number in [0, 1): every host and process makes the
same decision for the same trace_id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from evaluator.core.records import Trace

_SCALE = float(2**64)
NOT_SAMPLED = "not_sampled"
NO_RUBRIC_RATES: Mapping[str, float] = MappingProxyType({})


def trace_fraction(trace_id: str) -> float:
    """Map a trace_id to a stable number in [0, 1): the first 8 bytes of its sha256."""
    digest = hashlib.sha256(trace_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


@dataclass(frozen=True)
class SampleDecision:
    sampled: bool
    reason: str
    """`error`, `negative_feedback`, `content_filter`, `attribute:KEY[=VALUE]`, `random` or
    `not_sampled`."""
    weight: float
    """Inverse-probability weight of a sampled trace (0 when not sampled)."""
    rate: float | None = None
    """A random sample's rate for rubrics without a rate of their own."""
    rubric_rates: Mapping[str, float] = field(default_factory=lambda: NO_RUBRIC_RATES)
    """A random sample's rates of the rubrics that sample at another rate than `rate`."""

    def for_rubric(self, criterion: str, trace_id: str) -> SampleDecision:
        """The decision for one rubric: a trace sent because another rubric's higher rate
        picked it is not sampled for this one unless this rubric's own rate picks it too."""
        if not self.rubric_rates or self.rate is None:
            return self
        rate = self.rubric_rates.get(criterion, self.rate)
        if rate > 0 and trace_fraction(trace_id) < rate:
            return SampleDecision(True, self.reason, 1.0 / rate, rate)
        return SampleDecision(False, NOT_SAMPLED, 0.0, rate)

    def __reduce__(self) -> tuple:
        """Pickled with its rubric rates as a dict (a read-only view pickles not)."""
        return _decision, (self.sampled, self.reason, self.weight, self.rate, dict(self.rubric_rates))


def _decision(sampled: bool, reason: str, weight: float, rate: float | None,
              rubric_rates: dict[str, float]) -> SampleDecision:
    return SampleDecision(sampled, reason, weight, rate,
                          MappingProxyType(rubric_rates) if rubric_rates else NO_RUBRIC_RATES)


@dataclass(frozen=True)
class WorkItem:
    """A sampled trace on its way to the judge, with why it was sampled."""

    trace: Trace
    decision: SampleDecision
    prompts: Mapping[str, object] | None = field(default=None, compare=False)
    """Its rubrics' prompts (or render errors) by rubric content hash, when rendered ahead of
    the judge (evaluator.worker.prompts_ahead); None: each is rendered when judged."""
