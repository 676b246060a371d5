"""The one retry helper: attempts, backoff bounds, Retry-After, deadline, on a fake clock."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluator.core.retry import Backoff, RetryPolicy, retry_call, retry_call_async


class Transient(Exception):
    def __init__(self, retry_after: float | None = None):
        super().__init__("transient")
        self.retry_after = retry_after


class Final(Exception):
    pass


class FakeClock:
    """time.monotonic and time.sleep in one: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


class Flaky:
    """Fails with the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def transient_only(exc: BaseException) -> bool:
    return isinstance(exc, Transient)


def hinted(exc: BaseException) -> float | None:
    return getattr(exc, "retry_after", None)


STEADY = Backoff(base_s=1.0, cap_s=100.0, jitter="none")
POLICY = RetryPolicy(STEADY, transient_only, hinted, max_attempts=5)


def test_transient_failures_are_retried_until_success() -> None:
    clock, fn = FakeClock(), Flaky(Transient(), Transient(), Transient())
    assert retry_call(fn, POLICY, sleep=clock.sleep, clock=clock) == "ok"
    assert fn.calls == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_gives_up_after_max_attempts_with_the_last_failure() -> None:
    clock = FakeClock()
    last = Transient()
    fn = Flaky(Transient(), Transient(), last, Transient())
    with pytest.raises(Transient) as raised:
        retry_call(fn, replace(POLICY, max_attempts=3), sleep=clock.sleep, clock=clock)
    assert raised.value is last
    assert fn.calls == 3
    assert len(clock.sleeps) == 2


def test_a_final_failure_is_raised_at_once() -> None:
    clock, fn = FakeClock(), Flaky(Final())
    with pytest.raises(Final):
        retry_call(fn, POLICY, sleep=clock.sleep, clock=clock)
    assert (fn.calls, clock.sleeps) == (1, [])


def test_retry_after_wins_over_the_curve_within_its_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4.0, retry_after_cap_s=10.0, rng=random.Random(3))
    policy = RetryPolicy(backoff, transient_only, hinted, max_attempts=3)
    clock, fn = FakeClock(), Flaky(Transient(retry_after=7.0), Transient(retry_after=120.0))
    assert retry_call(fn, policy, sleep=clock.sleep, clock=clock) == "ok"
    first, second = clock.sleeps
    assert 7.0 <= first <= 7.5
    assert 10.0 <= second <= 10.5


def test_retry_after_without_jitter_is_exact() -> None:
    clock, fn = FakeClock(), Flaky(Transient(retry_after=3.0))
    retry_call(fn, POLICY, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [3.0]


def test_deadline_gives_up_before_a_wait_that_would_end_past_it() -> None:
    clock = FakeClock()
    fn = Flaky(*[Transient() for _ in range(20)])
    policy = RetryPolicy(STEADY, transient_only, deadline_s=10.0)
    with pytest.raises(Transient):
        retry_call(fn, policy, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [1.0, 2.0, 4.0]  # the next (8 s) would end at 15 s > 10 s
    assert fn.calls == 4


def test_deadline_counts_the_time_attempts_take() -> None:
    clock = FakeClock()

    def slow_failure() -> str:
        clock.now += 4.0
        raise Transient()

    policy = RetryPolicy(STEADY, transient_only, deadline_s=10.0)
    with pytest.raises(Transient):
        retry_call(slow_failure, policy, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [1.0]  # 4 + 1 + 4 = 9 s; a 2 s wait would end at 11 s


def test_a_retry_after_past_the_deadline_gives_up() -> None:
    clock, fn = FakeClock(), Flaky(Transient(retry_after=30.0))
    policy = RetryPolicy(STEADY, transient_only, hinted, deadline_s=10.0)
    with pytest.raises(Transient):
        retry_call(fn, policy, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


def test_on_retry_hears_each_failure_attempt_and_wait() -> None:
    clock = FakeClock()
    first, second = Transient(), Transient()
    heard: list[tuple[BaseException, int, float]] = []
    retry_call(Flaky(first, second), POLICY, sleep=clock.sleep, clock=clock,
               on_retry=lambda exc, attempt, wait: heard.append((exc, attempt, wait)))
    assert heard == [(first, 1, 1.0), (second, 2, 2.0)]


def test_async_variant_retries_without_blocking() -> None:
    clock = FakeClock()
    fn = Flaky(Transient(), Transient(), Final())

    async def call() -> str:
        return fn()

    with pytest.raises(Final):
        asyncio.run(retry_call_async(call, POLICY, sleep=clock.asleep, clock=clock))
    assert (fn.calls, clock.sleeps) == (3, [1.0, 2.0])
    fn = Flaky(Transient())
    assert asyncio.run(retry_call_async(call, POLICY, sleep=clock.asleep, clock=clock)) == "ok"


def test_async_variant_honours_the_deadline() -> None:
    clock = FakeClock()
    fn = Flaky(*[Transient() for _ in range(20)])

    async def call() -> str:
        return fn()

    policy = RetryPolicy(STEADY, transient_only, deadline_s=3.5)
    with pytest.raises(Transient):
        asyncio.run(retry_call_async(call, policy, sleep=clock.asleep, clock=clock))
    assert clock.sleeps == [1.0, 2.0]


@given(failures=st.integers(1, 5000), seed=st.integers(0, 2**32),
       base=st.floats(0.001, 10.0), cap=st.floats(0.001, 100.0))
def test_jittered_waits_stay_within_their_bounds(failures: int, seed: int, base: float,
                                                 cap: float) -> None:
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 1000))
    full = Backoff(base, cap, rng=random.Random(seed), jitter="full")
    half = Backoff(base, cap, rng=random.Random(seed), jitter="half")
    none = Backoff(base, cap, jitter="none")
    assert 0.0 <= full.delay_s(failures) <= ceiling
    assert ceiling / 2 <= half.delay_s(failures) <= ceiling
    assert none.delay_s(failures) == pytest.approx(ceiling)


def test_a_constant_backoff_never_grows() -> None:
    constant = Backoff(base_s=1.5, cap_s=float("inf"), jitter="none", multiplier=1.0)
    assert {constant.delay_s(n) for n in (1, 2, 50, 10_000)} == {1.5}


def test_a_call_that_succeeds_at_once_is_made_once_and_never_waits() -> None:
    clock = FakeClock()
    fn = Flaky()
    assert retry_call(fn, POLICY, sleep=clock.sleep, clock=clock) == "ok"
    assert (fn.calls, clock.sleeps) == (1, [])


def test_an_async_lambda_is_awaited_and_retried() -> None:
    clock = FakeClock()
    fn = Flaky(Transient(), Transient())

    async def once() -> str:
        return fn()

    result = asyncio.run(retry_call_async(lambda: once(), POLICY, sleep=clock.asleep, clock=clock))
    assert (result, fn.calls, clock.sleeps) == ("ok", 3, [1.0, 2.0])
