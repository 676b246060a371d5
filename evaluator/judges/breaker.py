"""A circuit breaker per judge per worker process: a judge that keeps failing is paused.

closed -> open after `consecutive_failures` failures in a row, or when the failure rate over
the last `window` calls reaches `failure_rate`. open -> half-open after `cooldown_s`.
Half-open lets `half_open_probes` calls through; each success lets one more in (a slow start
that doubles the calls in flight per round trip), and the circuit closes once `ramp_to` calls
(the judge's in-flight limit) could be in flight. Half-open opens again when, after at least
`half_open_probes` outcomes, the share of failures reaches `failure_rate`; so one slow or failed
probe among good ones does not send the whole judge back to a cooldown.

Every admitted call carries a ticket naming the circuit period it was admitted in; an outcome
from an earlier period (a call that started before the circuit opened, or a probe that ends
after it closed) is ignored: a burst of stale timeouts must not reopen a circuit that just closed.
Callers that were refused ask `retry_in_s()` when to try again; the answer is jittered: calls
waiting on an open circuit come back spread uniformly over one more cooldown after it ends.
Released all at once they would also time out all at once a timeout later, a burst of failures
that opened the circuit again (26 times in one run of a judge with 10% 30 s calls).

Only failures that say the judge itself is in trouble count (rate limits, server errors,
timeouts, refused connections, a rejected key or unknown model); a request the provider
rejects on its own merits (say, one prompt too long) counts as a working judge.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from evaluator.judges.attempt import Attempt, CircuitRefused, Sender, WaitTooLong
from evaluator.judges.config import JudgeBreaker
from evaluator.judges.retry import counts_against_judge
from evaluator.judges.transport import Reply

log = logging.getLogger(__name__)

HALF_OPEN_POLL_S = 0.05
"""Mean wait of a refused call while half-open (jittered by +-50%)."""
NO_TICKET = 0


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe; every method is cheap (a lock and a few comparisons)."""

    def __init__(self, judge: str, settings: JudgeBreaker,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, CircuitState], None] | None = None,
                 ramp_to: int = 32, rng: random.Random | None = None):
        self.judge = judge
        self.settings = settings
        self.ramp_to = max(ramp_to, settings.half_open_probes + 1)
        self._clock = clock
        self._on_change = on_change
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._period = 1
        """Bumped on every state change; a ticket is the period its call was admitted in."""
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=settings.window)
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._probe_ok = 0
        self._probe_failed = 0
        self.last_failure: str | None = None
        self.times_opened = 0

    @property
    def state(self) -> CircuitState:
        with self._lock:
            self._half_open_if_cooled()
            return self._state

    def try_acquire(self) -> tuple[bool, int]:
        """(may call now, the ticket to hand to record() or abandon())."""
        with self._lock:
            self._half_open_if_cooled()
            if self._state is CircuitState.CLOSED:
                return True, self._period
            if (self._state is CircuitState.HALF_OPEN
                    and self._probes_in_flight < self.settings.half_open_probes + self._probe_ok):
                self._probes_in_flight += 1
                return True, self._period
            return False, NO_TICKET

    def retry_in_s(self) -> float:
        """How long a refused call should wait before asking again (jittered)."""
        with self._lock:
            if self._state is CircuitState.OPEN:
                left = max(0.0, self._opened_at + self.settings.cooldown_s - self._clock())
                return left + self._rng.uniform(0, self.settings.cooldown_s)
            poll = min(HALF_OPEN_POLL_S, self.settings.cooldown_s)
            return poll * self._rng.uniform(0.5, 1.5)

    def record(self, failed: bool, ticket: int, detail: str | None = None) -> None:
        """The outcome of a call admitted by try_acquire()."""
        with self._lock:
            if failed:
                self.last_failure = detail
            if ticket != self._period:
                return  # admitted under an earlier state of the circuit: says nothing about now
            if self._state is CircuitState.HALF_OPEN:
                self._probe_outcome(failed, detail)
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

    def abandon(self, ticket: int) -> None:
        """An admitted call ended without an outcome (cancelled, or deferred): free its slot."""
        with self._lock:
            if ticket == self._period and self._state is CircuitState.HALF_OPEN:
                self._probes_in_flight -= 1

    def _probe_outcome(self, failed: bool, detail: str | None) -> None:
        self._probes_in_flight -= 1
        if failed:
            self._probe_failed += 1
        else:
            self._probe_ok += 1
        outcomes = self._probe_ok + self._probe_failed
        if (failed and outcomes >= self.settings.half_open_probes
                and self._probe_failed / outcomes >= self.settings.failure_rate):
            self._open(f"{self._probe_failed} of {outcomes} probe calls failed (last: {detail})")
        elif self.settings.half_open_probes + self._probe_ok >= self.ramp_to:
            self._close()

    def _half_open_if_cooled(self) -> None:
        if (self._state is CircuitState.OPEN
                and self._clock() >= self._opened_at + self.settings.cooldown_s):
            self._enter(CircuitState.HALF_OPEN)
            self._probes_in_flight = self._probe_ok = self._probe_failed = 0
            log.debug("judge %s: circuit half-open, %d probe calls may test it", self.judge,
                      self.settings.half_open_probes)
            self._changed()

    def _open(self, why: str) -> None:
        reopened = self._state is CircuitState.HALF_OPEN
        self._enter(CircuitState.OPEN)
        self._opened_at = self._clock()
        self.times_opened += 1
        log.log(logging.INFO if reopened else logging.WARNING,
                "judge %s: circuit OPEN after %s; pausing its calls for %gs",
                self.judge, why, self.settings.cooldown_s)
        self._changed()

    def _close(self) -> None:
        self._enter(CircuitState.CLOSED)
        log.info("judge %s: circuit closed, %d probe calls succeeded", self.judge, self._probe_ok)
        self._changed()

    def _enter(self, state: CircuitState) -> None:
        self._state = state
        self._period += 1
        self._consecutive = 0
        self._recent.clear()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.judge, self._state)


class BreakerGate:
    """A Sender that asks the breaker before each request (raising CircuitRefused when it does
    not admit it) and tells it how the request went."""

    def __init__(self, inner: Sender, breaker: CircuitBreaker):
        self.inner = inner
        self.breaker = breaker

    async def send(self, attempt: Attempt) -> Reply:
        admitted, ticket = self.breaker.try_acquire()
        if not admitted:
            raise CircuitRefused(f"judge {self.breaker.judge}: circuit open")
        try:
            reply = await self.inner.send(attempt)
        except (asyncio.CancelledError, WaitTooLong):  # no outcome: free the probe slot
            self.breaker.abandon(ticket)
            raise
        except Exception as exc:
            self.breaker.record(counts_against_judge(exc), ticket, type(exc).__name__)
            raise
        self.breaker.record(False, ticket)
        return reply
