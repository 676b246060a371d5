"""Trying again after a transient failure: one backoff computation and one retry loop.

Every place that waits and tries again (a judge call, publishing results through a Redis
outage, opening a store another process holds, a webhook, reconnecting to Redis, the sink)
states its policy as data, a `Backoff` and a `RetryPolicy`, and runs it here on tenacity.
Which failures are transient and how long a server asked us to wait are inputs
(`is_retryable`, `retry_after`): only the caller knows its errors. Imports nothing of ours.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypedDict, TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_base, retry_if_exception

T = TypeVar("T")

Jitter = Literal["full", "half", "none"]
"""full: a wait drawn from [0, d] (spreads a herd of clients best); half: from [d/2, d]; none: d."""

OnRetry = Callable[[BaseException, int, float], None]
"""Told of each retry: the failure, the attempts made so far, and the wait before the next."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: the wait after the n-th failure is base_s * multiplier**(n-1), at
    most cap_s, then jittered. A server's Retry-After hint wins over the curve, within
    retry_after_cap_s, plus up to base_s of jitter (none when jitter is "none")."""

    base_s: float = 0.5
    cap_s: float = 20.0
    retry_after_cap_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    jitter: Jitter = "full"
    multiplier: float = 2.0

    def ceiling_s(self, failures: int) -> float:
        """The un-jittered wait after `failures` failed attempts (1, 2, ...)."""
        try:
            grown = self.base_s * self.multiplier ** (failures - 1)
        except OverflowError:  # a long outage: the curve is far past the cap
            return self.cap_s
        return min(self.cap_s, grown)

    def delay_s(self, failures: int, retry_after: float | None = None) -> float:
        """The wait before the next attempt, after `failures` failed attempts (1, 2, ...)."""
        if retry_after is not None:
            spread = 0.0 if self.jitter == "none" else self.rng.uniform(0, self.base_s)
            return min(retry_after, self.retry_after_cap_s) + spread
        ceiling = self.ceiling_s(failures)
        if self.jitter == "full":
            return self.rng.uniform(0, ceiling)
        if self.jitter == "half":
            return ceiling * self.rng.uniform(0.5, 1.0)
        return ceiling


def no_hint(exc: BaseException) -> float | None:
    """For failures that carry no Retry-After."""
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again. A failure that `is_retryable` rejects is raised at once; otherwise
    the call is tried again after the backoff's wait, until max_attempts attempts were made or
    the next wait would end more than deadline_s after the first attempt began (None: no such
    limit). Giving up raises the last failure itself."""

    backoff: Backoff
    is_retryable: Callable[[BaseException], bool]
    retry_after: Callable[[BaseException], float | None] = no_hint
    max_attempts: int | None = None
    deadline_s: float | None = None


def retry_call(fn: Callable[[], T], policy: RetryPolicy, *, on_retry: OnRetry | None = None,
               sleep: Callable[[float], object] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> T:
    """fn(), tried again under `policy`; `sleep` waits (a stop event's wait fits too)."""
    started = clock()
    try:
        return fn()
    except Exception as exc:
        if not policy.is_retryable(exc):
            raise
        first = exc
    replay = _Replay(first)

    def attempt() -> T:
        replay.raise_first()
        return fn()

    def pause(seconds: float) -> None:  # tenacity's sleep returns None; `sleep` may return a flag
        sleep(seconds)

    return Retrying(sleep=pause, **_strategy(policy, on_retry, clock, started))(attempt)


async def retry_call_async(fn: Callable[[], Awaitable[T]], policy: RetryPolicy, *,
                           on_retry: OnRetry | None = None,
                           sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                           clock: Callable[[], float] = time.monotonic) -> T:
    """await fn(), tried again under `policy`, waiting without blocking the event loop. `fn`
    may be a coroutine function or any callable returning an awaitable (a lambda)."""
    started = clock()
    try:
        return await fn()
    except Exception as exc:
        if not policy.is_retryable(exc):
            raise
        first = exc
    replay = _Replay(first)

    async def attempt() -> T:
        replay.raise_first()
        return await fn()

    async def pause(seconds: float) -> None:
        await sleep(seconds)

    return await AsyncRetrying(sleep=pause, **_strategy(policy, on_retry, clock, started))(attempt)


class _Replay:
    """The first attempt runs before tenacity is set up (most calls succeed at once, and
    tenacity's set-up costs more than a judge wrapper): tenacity's own first attempt then only
    re-raises that failure, so its waits and attempt numbers stay those of the policy."""

    def __init__(self, first: Exception) -> None:
        self._first: Exception | None = first

    def raise_first(self) -> None:
        first, self._first = self._first, None
        if first is not None:
            raise first


class _Strategy(TypedDict):
    """tenacity's keyword arguments that a policy sets."""

    wait: Callable[[RetryCallState], float]
    stop: Callable[[RetryCallState], bool]
    retry: retry_base
    before_sleep: Callable[[RetryCallState], None]
    reraise: bool


def _strategy(policy: RetryPolicy, on_retry: OnRetry | None, clock: Callable[[], float],
              started: float) -> _Strategy:
    """tenacity's wait, stop, retry and before_sleep for a policy, timed by `clock` from
    `started` (when the first attempt began)."""
    deadline = None if policy.deadline_s is None else started + policy.deadline_s

    def failure(state: RetryCallState) -> BaseException:
        assert state.outcome is not None
        exc = state.outcome.exception()
        assert exc is not None  # only failures are retried
        return exc

    def wait(state: RetryCallState) -> float:
        return policy.backoff.delay_s(state.attempt_number, policy.retry_after(failure(state)))

    def stop(state: RetryCallState) -> bool:
        if policy.max_attempts is not None and state.attempt_number >= policy.max_attempts:
            return True
        return deadline is not None and clock() + state.upcoming_sleep > deadline

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry(failure(state), state.attempt_number, state.upcoming_sleep)

    return {"wait": wait, "stop": stop, "retry": retry_if_exception(policy.is_retryable),
            "before_sleep": before_sleep, "reraise": True}
