"""A circuit breaker per judge per worker process: a judge that keeps failing is paused.

closed -> open after `consecutive_failures` failures in a row, or when the failure rate over
the last `window` calls reaches `failure_rate`. open -> half-open after `cooldown_s`: one
probe call may go; its success closes the circuit, its failure opens it again. Outcomes of
calls that started before the circuit opened are ignored while it is open.

Only failures that say the judge itself is in trouble count (rate limits, server errors,
timeouts, refused connections, a rejected key or unknown model); a request the provider
rejects on its own merits (say, one prompt too long) counts as a working judge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum

from evaluator.judge_config import JudgeBreaker

log = logging.getLogger(__name__)


class CircuitState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe; every method is cheap (a lock and a few comparisons)."""

    def __init__(self, judge: str, settings: JudgeBreaker,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, CircuitState], None] | None = None):
        self.judge = judge
        self.settings = settings
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=settings.window)
        self._opened_at = 0.0
        self._probe_out = False
        self.last_failure: str | None = None
        self.times_opened = 0

    @property
    def state(self) -> CircuitState:
        with self._lock:
            self._half_open_if_cooled()
            return self._state

    def try_acquire(self) -> tuple[bool, bool]:
        """(may call now, this call is the half-open probe)."""
        with self._lock:
            self._half_open_if_cooled()
            if self._state is CircuitState.CLOSED:
                return True, False
            if self._state is CircuitState.HALF_OPEN and not self._probe_out:
                self._probe_out = True
                return True, True
            return False, False

    def retry_in_s(self) -> float:
        """Seconds until an open circuit lets a probe through (a short poll when half-open)."""
        with self._lock:
            if self._state is CircuitState.OPEN:
                return max(0.0, self._opened_at + self.settings.cooldown_s - self._clock())
            return min(0.05, self.settings.cooldown_s)

    def record(self, failed: bool, probe: bool, detail: str | None = None) -> None:
        """The outcome of a call admitted by try_acquire()."""
        with self._lock:
            if failed:
                self.last_failure = detail
            if self._state is CircuitState.HALF_OPEN:
                if probe:
                    self._probe_out = False
                    if failed:
                        self._open(f"the probe call failed ({detail})")
                    else:
                        self._close()
                return
            if self._state is CircuitState.OPEN:
                return
            self._recent.append(failed)
            self._consecutive = self._consecutive + 1 if failed else 0
            if self._consecutive >= self.settings.consecutive_failures:
                self._open(f"{self._consecutive} consecutive failures (last: {detail})")
            elif len(self._recent) == self._recent.maxlen:
                rate = sum(self._recent) / len(self._recent)
                if rate >= self.settings.failure_rate:
                    self._open(f"{rate:.0%} of the last {len(self._recent)} calls failed "
                               f"(last: {detail})")

    def abandon(self, probe: bool) -> None:
        """An admitted call ended without an outcome (cancelled): free the probe slot."""
        if probe:
            with self._lock:
                self._probe_out = False

    def _half_open_if_cooled(self) -> None:
        if (self._state is CircuitState.OPEN
                and self._clock() >= self._opened_at + self.settings.cooldown_s):
            self._state = CircuitState.HALF_OPEN
            self._probe_out = False
            log.debug("judge %s: circuit half-open, one probe call may test it", self.judge)
            self._changed()

    def _open(self, why: str) -> None:
        reopened = self._state is CircuitState.HALF_OPEN
        self._state = CircuitState.OPEN
        self._opened_at = self._clock()
        self._consecutive = 0
        self._recent.clear()
        self.times_opened += 1
        log.log(logging.INFO if reopened else logging.WARNING,
                "judge %s: circuit OPEN after %s; pausing its calls for %gs",
                self.judge, why, self.settings.cooldown_s)
        self._changed()

    def _close(self) -> None:
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._recent.clear()
        log.info("judge %s: circuit closed, the probe call succeeded", self.judge)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.judge, self._state)
