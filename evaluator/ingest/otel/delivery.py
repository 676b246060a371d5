"""Where the exporter's output goes: Redis (dramatiq queue + results channel) or a callable.

Redis is reached lazily and behind a backoff: an app must start, and keep serving, while
Redis is down. While backing off, sends fail at once instead of waiting on a dead socket.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from evaluator.core.errors import BrokerError
from evaluator.core.records import DeadLetter
from evaluator.core.retry import Backoff
from evaluator.core.stage_timing import timed
from evaluator.core.work import WorkItem

if TYPE_CHECKING:
    from dramatiq import Broker

    from evaluator.queue.channel import RedisStreamChannel

Sink = Callable[[list[WorkItem]], None]
DeadLetterSink = Callable[[list[DeadLetter]], None]

RECONNECT_BACKOFF = Backoff(base_s=1.0, cap_s=60.0, jitter="none")
"""After the n-th failure in a row, no Redis command for 1 s, doubling up to 60 s."""


class Delivery(Protocol):
    def send(self, items: list[WorkItem]) -> None:
        """Deliver sampled, masked work items; raise on failure."""

    def send_dead_letters(self, dead: list[DeadLetter]) -> bool:
        """Keep dead letters where operators look; False when they can only be counted."""

    def reachable(self) -> bool:
        """Whether a send can succeed now (False fails fast: no Redis command is tried)."""

    def close(self) -> None: ...


class SinkDelivery:
    """Embedded use and tests: work items go to a callable; dead letters to another, or, without
    one, are only counted."""

    def __init__(self, sink: Sink, dead_letters: DeadLetterSink | None = None) -> None:
        self._sink = sink
        self._dead_letters = dead_letters

    def send(self, items: list[WorkItem]) -> None:
        self._sink(items)

    def send_dead_letters(self, dead: list[DeadLetter]) -> bool:
        if self._dead_letters is None:
            return False
        self._dead_letters(dead)
        return True

    def reachable(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing held."""


class RedisDelivery:
    """Work items to the dramatiq queue (a producer broker, never dramatiq's global one);
    dead letters to the results stream, where `evaluator sink` stores them."""

    def __init__(self, redis_url: str, judge: str, rubrics: Sequence[str] = (), batch_size: int = 5,
                 clock: Callable[[], float] = time.monotonic, timeout_s: float = 2.0) -> None:
        self._url = redis_url
        self._timeout_s = timeout_s
        """The longest any Redis command waits for its reply (a hung Redis, SIGSTOPped)."""
        self._judge = judge
        self._rubrics = tuple(rubrics)
        self._batch_size = batch_size
        self._clock = clock
        self._connection: tuple[Broker, RedisStreamChannel] | None = None
        self._failures = 0
        self._retry_at = 0.0

    @property
    def backing_off_s(self) -> float:
        """Seconds until the next connection attempt after a failure (0: none pending)."""
        return max(0.0, self._retry_at - self._clock())

    def _connect(self) -> tuple[Broker, RedisStreamChannel]:
        if self._clock() < self._retry_at:
            raise BrokerError(f"Redis at {self._url} unreachable; next attempt in "
                              f"{self._retry_at - self._clock():.0f} s")
        if self._connection is not None:
            return self._connection
        # lazy: dramatiq and redis load on the first send: the host app's import stays light
        from evaluator.queue.broker import build_producer_broker, redis_client
        from evaluator.queue.channel import RedisStreamChannel

        try:
            broker = build_producer_broker(self._url, self._timeout_s)
            channel = RedisStreamChannel(redis_client(self._url, self._timeout_s))
        except Exception:
            self._failed()
            raise
        self._connection = broker, channel
        return self._connection

    def _failed(self) -> None:
        """Back off, and drop the connection: the next attempt connects again, and its PING
        finds out within one timeout whether Redis answers (a hung Redis costs one timeout per
        attempt, not one per command)."""
        self._failures += 1
        self._retry_at = self._clock() + RECONNECT_BACKOFF.delay_s(self._failures)
        self.close()

    def reachable(self) -> bool:
        """False while backing off after a failure; else connected (PING answered)."""
        try:
            self._connect()
        except Exception:
            return False
        return True

    def _guarded(self, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception:
            self._failed()
            raise
        self._failures = 0

    @timed("enqueue")
    def send(self, items: list[WorkItem]) -> None:
        # lazy: dramatiq and redis load on the first send: the host app's import stays light
        from evaluator.queue.producer import enqueue

        broker, _ = self._connect()
        self._guarded(lambda: enqueue(broker, items, self._judge, self._rubrics,
                                      batch_size=self._batch_size))

    def send_dead_letters(self, dead: list[DeadLetter]) -> bool:
        # lazy: dramatiq and redis load on the first send: the host app's import stays light
        from evaluator.queue.messages import ResultBatch

        _, channel = self._connect()
        self._guarded(lambda: channel.publish(ResultBatch(dead_letters=dead)))
        return True

    def close(self) -> None:
        if self._connection is not None:
            self._connection[0].close()
            self._connection = None


class RateLimitedLog:
    """At most one record per key per interval, saying how many were held back meanwhile."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" ({held} similar messages held back)" if held else ""
        self._logger.warning(message + suffix, *args)
