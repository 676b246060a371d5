"""The span exporter's sampler under back-pressure: it never waits for room in the work queue
(it must not hold up the app), it samples less.

Its random rate is halved each refresh while the queue is over the bound and doubled back while
it is below half of it, and while the queue is full no random sample is sent at all. Traces the
always-evaluate rules pick (errors, negative feedback, content filter) are never held back.
Sample weights follow the rate actually used, so weighted rates stay unbiased.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from evaluator.core.records import Trace
from evaluator.core.work import SampleDecision
from evaluator.queue.backpressure import QueueGauge
from evaluator.sampling.policy import SamplingPolicy, ScaledPolicies, decide

HELD_BACK = "held_back"
"""Reason of a trace the random sampler would have sent, held back by back-pressure."""
MIN_RATE_SCALE = 1 / 1024


class SamplingThrottle:
    """The exporter's sampler under back-pressure (see the module docstring)."""

    def __init__(self, gauge: QueueGauge, batch_size: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gauge = gauge
        self._batch_size = batch_size
        self._admitted = 0
        """Traces let through since the last delivery (they travel batch_size to a message)."""
        self.scale = 1.0
        """The share of the configured random rate in use now."""
        self._clock = clock
        self._adjusted_at: float | None = None
        self._found_full = False
        """A random sample found no room since the last adjustment."""
        self._scaled = ScaledPolicies()

    def decide(self, trace: Trace, policy: SamplingPolicy) -> SampleDecision:
        """The policy's decision, or HELD_BACK for a random sample the queue has no room for."""
        decision = decide(trace, policy)
        if decision.reason == "random":
            self._adjust()
            if self.scale < 1.0:
                decision = decide(trace, self._scaled.get(policy, self.scale))
                if not decision.sampled:
                    return SampleDecision(False, HELD_BACK, 0.0)
            if not self._room_for_one_more():
                self._found_full = True
                return SampleDecision(False, HELD_BACK, 0.0)
        self._admitted += decision.sampled
        return decision

    def delivered(self, traces: int) -> None:
        """The traces let through since the last call were delivered (`traces` of them; 0 when
        the delivery failed)."""
        self.gauge.count_sent(-(-traces // self._batch_size))
        self._admitted = 0

    def _room_for_one_more(self) -> bool:
        messages = -(-(self._admitted + 1) // self._batch_size)
        return self.gauge.depth() + messages <= self.gauge.max_depth

    def _adjust(self) -> None:
        """Once per refresh: halve the rate if the queue was full, double it back below half."""
        now = self._clock()
        if self._adjusted_at is not None and now - self._adjusted_at < self.gauge.refresh_s:
            return
        self._adjusted_at = now
        depth = self.gauge.depth()
        if self._found_full or depth >= self.gauge.max_depth:
            self.scale = max(MIN_RATE_SCALE, self.scale / 2)
        elif depth < self.gauge.max_depth / 2:
            self.scale = min(1.0, self.scale * 2)
        self._found_full = False
