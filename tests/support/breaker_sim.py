"""A fake-clock simulation of one worker process's judge calls through a circuit breaker.

`callers` loops each make one judge call after another, retrying a failed call with jittered
exponential backoff (4 attempts) and waiting on the breaker when it refuses, as LLMJudge does in
service mode. The judge answers in `latency_s`; a share `slow_share` of calls hangs until the
client's timeout (a failure); during `outage` every call hangs. Nothing sleeps: events are
taken in time order from a heap and the breaker reads the simulated clock.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass

from evaluator.judges.breaker import CircuitBreaker

MAX_ATTEMPTS = 4


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Outcome:
    times_opened: int
    calls: int
    failures: int


def simulate(make_breaker: Callable[[FakeClock], CircuitBreaker], *, seed: int,
             callers: int = 64, until_s: float = 600.0, outage: tuple[float, float] = (40, 70),
             slow_share: float = 0.1, timeout_s: float = 30.0,
             latency_s: float = 0.2) -> Outcome:
    rng = random.Random(seed)
    clock = FakeClock()
    breaker = make_breaker(clock)
    # (time, caller, ticket of the call in flight or None when the caller is about to try)
    events: list[tuple[float, int, tuple[int, bool] | None]] = [
        (rng.uniform(0, timeout_s), caller, None) for caller in range(callers)]
    heapq.heapify(events)
    failed_attempts = [0] * callers
    calls = failures = 0
    while events:
        now, caller, in_flight = heapq.heappop(events)
        if now > until_s:
            break
        clock.now = now
        if in_flight is None:
            admitted, ticket = breaker.try_acquire()
            if not admitted:
                heapq.heappush(events, (now + max(1e-3, breaker.retry_in_s()), caller, None))
                continue
            calls += 1
            hangs = outage[0] <= now < outage[1] or rng.random() < slow_share
            ends = now + (timeout_s if hangs else latency_s)
            heapq.heappush(events, (ends, caller, (ticket, hangs)))
            continue
        ticket, failed = in_flight
        breaker.record(failed, ticket, "Timeout" if failed else None)
        delay = 0.0
        if failed:
            failures += 1
            failed_attempts[caller] += 1
            if failed_attempts[caller] < MAX_ATTEMPTS:
                delay = rng.uniform(0, 0.5 * 2 ** (failed_attempts[caller] - 1))
            else:
                failed_attempts[caller] = 0
        else:
            failed_attempts[caller] = 0
        heapq.heappush(events, (now + delay, caller, None))
    return Outcome(breaker.times_opened, calls, failures)
