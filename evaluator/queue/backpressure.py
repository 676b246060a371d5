"""Back-pressure: producers hold back while the work queue in Redis is full.

The depth is the length of dramatiq's list for the work queue (messages waiting for a worker),
read at most once per `refresh_s` and counted up by the producer's own sends in between, so a
check costs a Redis round trip once a second and a producer alone never overshoots the bound.

- `evaluator ingest` waits for room, and gives up with a clear error after a while;
- the span exporter never waits (it must not hold up the app): it samples less
  (evaluator.sampling.throttle).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from evaluator.core.errors import BrokerError
from evaluator.queue.messages import QUEUE_NAME

log = logging.getLogger(__name__)


class QueueFullError(BrokerError):
    """The work queue stayed full longer than a producer was willing to wait."""


class QueueGauge:
    """The work queue's depth against its bound, cached for `refresh_s`."""

    def __init__(self, client, max_depth: int, refresh_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if max_depth < 1:
            raise ValueError(f"max queue depth must be at least 1, got {max_depth}")
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
        # lazy: redis loads only in Redis mode: `evaluator run` and the exporter's import do without it
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
