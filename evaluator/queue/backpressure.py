"""Back-pressure: producers hold back while the work queue in Redis is full.

The depth is the length of dramatiq's list for the work queue (messages waiting for a worker),
read at most once per `refresh_s` and counted up by the producer's own sends in between, so a
check costs a Redis round trip once a second and a producer alone never overshoots the bound.

- `evaluator ingest` waits for room, and gives up with a clear error after a while;
- the span exporter never waits (it must not hold up the app): it samples less. Its random rate
  is halved each refresh while the queue is over the bound and doubled back while it is below
  half of it, and while the queue is full no random sample is sent at all. Traces the
  always-evaluate rules pick (errors, negative feedback, content filter) are never held back.
  Sample weights follow the rate actually used, so weighted rates stay unbiased.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from evaluator.core.errors import BrokerError
from evaluator.core.records import Trace
from evaluator.sampling.policy import SampleDecision, SamplingPolicy, ScaledPolicies, decide

log = logging.getLogger(__name__)

HELD_BACK = "held_back"
"""Reason of a trace the random sampler would have sent, held back by back-pressure."""
MIN_RATE_SCALE = 1 / 1024


class QueueFullError(BrokerError):
    """The work queue stayed full longer than a producer was willing to wait."""


class QueueGauge:
    """The work queue's depth against its bound, cached for `refresh_s`."""

    def __init__(self, client, max_depth: int, refresh_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if max_depth < 1:
            raise ValueError(f"max queue depth must be at least 1, got {max_depth}")
        from evaluator.queue.messages import QUEUE_NAME  # imported here: it pulls in the store

        self._client = client
        self._key = f"dramatiq:{QUEUE_NAME}"
        """dramatiq's Redis list of the message ids waiting in the work queue."""
        self.max_depth = max_depth
        self.refresh_s = refresh_s
        self._clock = clock
        self._sleep = sleep
        self._depth = 0
        self._read_at: float | None = None
        self.reserved = 0
        """Messages this producer was let through by `reserve`."""

    @classmethod
    def from_url(cls, url: str, max_depth: int, **kwargs) -> QueueGauge:
        """A gauge on its own client with short timeouts (a dead Redis must not stall the caller)."""
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        return cls(client, max_depth, **kwargs)

    def depth(self) -> int:
        """Messages waiting (plus our sends since the last read); when Redis cannot be read, the
        last known depth."""
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self.refresh_s:
            self._read_at = now
            try:
                self._depth = int(self._client.llen(self._key))
            except Exception as exc:  # Redis down: the producer's send fails and says so
                log.debug("reading the work queue depth failed: %r", exc)
        return self._depth

    @property
    def full(self) -> bool:
        return self.depth() >= self.max_depth

    def count_sent(self, messages: int) -> None:
        """The producer's own sends, until the next read of the real depth."""
        self._depth += messages

    def reserve(self, timeout_s: float) -> None:
        """Block until there is room for one more message (and count it), or raise
        QueueFullError after `timeout_s`."""
        deadline = self._clock() + timeout_s
        warned = False
        while self.full:
            if self._clock() >= deadline:
                raise QueueFullError(
                    f"the work queue held {self._depth:,} messages (limit {self.max_depth:,}, "
                    f"EVALUATOR_MAX_QUEUE_DEPTH) for {timeout_s:g}s and {self.reserved:,} "
                    "messages were sent before that: the workers are not keeping up (are they "
                    "running? is the judge slow or down?). Start more workers or raise the "
                    "limit, then ingest again: evaluations already stored are not duplicated")
            if not warned:
                log.warning("work queue full (%d messages, limit %d): waiting for the workers",
                            self._depth, self.max_depth)
                warned = True
            self._sleep(self.refresh_s)
        self.count_sent(1)
        self.reserved += 1


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
