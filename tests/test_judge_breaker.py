"""The circuit breaker (closed/open/half-open) and the fallback judges it and the rate limit
send calls to."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluator.core.records import Trace, evaluation_id_for
from evaluator.core.retry import Backoff
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.judges.breaker import CircuitBreaker, CircuitState
from evaluator.judges.config import JudgeBreaker
from evaluator.judges.factory import build_llm_judge, load_judge
from evaluator.judges.retrying import CIRCUIT_OPEN_REASON
from evaluator.judges.runtime import JudgeRuntime
from evaluator.worker.pipeline import evaluate_batch
from tests.support.breaker_sim import FakeClock, simulate
from tests.support.judging import (
    KEY,
    KEY_ENV,
    judge_all,
    judge_config,
    prompt,
    published_rubric,
    write_judge,
)
from tests.support.openai_server import OpenAIServer

FAST_BREAKER = {"consecutive_failures": 3, "cooldown_s": 0.3, "max_wait_s": 0.6}


def breaker(clock: FakeClock, ramp_to: int = 32, **settings: float) -> CircuitBreaker:
    return CircuitBreaker("j", JudgeBreaker(**{"consecutive_failures": 3, "cooldown_s": 10,
                                              **settings}), clock, ramp_to=ramp_to,
                          rng=random.Random(0))


def call(b: CircuitBreaker, failed: bool) -> bool:
    """One admitted call with its outcome; False when the breaker did not admit it."""
    admitted, ticket = b.try_acquire()
    if admitted:
        b.record(failed, ticket, "boom" if failed else None)
    return admitted


def opened(clock: FakeClock, **settings: float) -> CircuitBreaker:
    b = breaker(clock, **settings)
    for _ in range(3):
        call(b, True)
    assert b.state is CircuitState.OPEN
    return b


def admit_all(b: CircuitBreaker, waiting: int) -> list[int]:
    """Tickets of the waiting calls the breaker lets through now."""
    return [ticket for admitted, ticket in (b.try_acquire() for _ in range(waiting)) if admitted]


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def test_opens_after_consecutive_failures_and_probes_close_it(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    b = breaker(clock, ramp_to=4, half_open_probes=1)
    with caplog.at_level(logging.INFO, logger="evaluator.judges.breaker"):
        assert [call(b, True) for _ in range(3)] == [True] * 3
        assert b.state is CircuitState.OPEN and b.times_opened == 1
        assert not call(b, False), "open: no calls"
        assert 10 <= b.retry_in_s() <= 20
        clock.now += 10
        assert b.state is CircuitState.HALF_OPEN
        assert [call(b, False) for _ in range(3)] == [True] * 3
        assert b.state is CircuitState.CLOSED
    assert "circuit OPEN after 3 consecutive failures (last: boom)" in caplog.text
    assert "circuit closed" in caplog.text


def test_half_open_admits_a_few_probes_then_ramps_up_as_they_succeed() -> None:
    """Issue 15.4: when it half-opened, every waiting call went out at once."""
    clock = FakeClock()
    b = opened(clock)
    clock.now += 10
    waiting, admitted_per_round = 200, []
    while b.state is CircuitState.HALF_OPEN:
        tickets = admit_all(b, waiting)
        admitted_per_round.append(len(tickets))
        waiting -= len(tickets)
        for ticket in tickets:
            b.record(False, ticket)
    assert admitted_per_round == [3, 6, 12, 24], "3 probes, then doubling per round trip"
    assert b.state is CircuitState.CLOSED and b.times_opened == 1


def test_one_failed_probe_among_good_ones_does_not_reopen_but_a_failing_share_does() -> None:
    clock = FakeClock()
    b = opened(clock)
    clock.now += 10
    first, second, third = admit_all(b, 10)
    b.record(True, first, "timeout")
    b.record(False, second)
    b.record(False, third)
    assert b.state is CircuitState.HALF_OPEN, "1 of 3 probes failed: keep testing"
    for ticket in admit_all(b, 10):
        b.record(True, ticket, "timeout")
    assert b.state is CircuitState.OPEN and b.times_opened == 2


def test_a_failed_probe_opens_it_again_and_an_abandoned_probe_frees_its_slot() -> None:
    clock = FakeClock()
    b = opened(clock, half_open_probes=1)
    clock.now += 10
    (ticket,) = admit_all(b, 5)
    b.abandon(ticket)
    (ticket,) = admit_all(b, 5)
    b.record(True, ticket, "still down")
    assert b.state is CircuitState.OPEN and b.times_opened == 2


def test_outcomes_of_calls_admitted_before_the_circuit_changed_are_ignored() -> None:
    """Calls that hung through an open period time out after it closed: no reopening on them."""
    clock = FakeClock()
    b = breaker(clock, ramp_to=4, half_open_probes=1)
    hung = admit_all(b, 10)
    for _ in range(3):
        call(b, True)
    b.record(False, hung[0])  # while open
    assert b.state is CircuitState.OPEN
    clock.now += 10
    for _ in range(3):
        call(b, False)
    assert b.state is CircuitState.CLOSED
    for ticket in hung[1:]:
        b.record(True, ticket, "Timeout")
    assert b.state is CircuitState.CLOSED and b.times_opened == 1


def test_opens_on_the_failure_rate() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=100, failure_rate=0.5, window=10)
    for i in range(10):
        call(b, i % 2 == 0)
    assert b.state is CircuitState.OPEN


def test_calls_waiting_on_an_open_circuit_come_back_spread_over_a_cooldown() -> None:
    clock = FakeClock()
    b = opened(clock)
    clock.now += 4
    waits = sorted(b.retry_in_s() for _ in range(200))
    assert waits[0] >= 6 and waits[-1] <= 16, "after the 6 s left, within one more cooldown"
    deciles = [sum(6 + k <= w < 7 + k for w in waits) for k in range(10)]
    assert min(deciles) >= 8, f"not bunched: {deciles} calls per second"


@pytest.mark.parametrize("seed", range(4))
def test_a_judge_with_slow_calls_does_not_flap_after_an_outage(seed: int) -> None:
    """Issue 15.4: 64 calls in flight, 10% of calls hang to the 30 s timeout, a 30 s outage.
    The old breaker opened 10 times in 600 s (each release of the waiting calls at once made
    them time out together a timeout later)."""
    outcome = simulate(lambda clock: CircuitBreaker("j", JudgeBreaker(), clock, ramp_to=32,
                                                    rng=random.Random(seed)), seed=seed)
    assert outcome.times_opened <= 2, outcome


def test_a_judge_that_stays_down_gets_only_its_probes() -> None:
    outcome = simulate(lambda clock: CircuitBreaker("j", JudgeBreaker(), clock),
                       seed=0, outage=(0, 600), slow_share=0.0)
    assert outcome.times_opened >= 5, outcome
    assert outcome.calls < 2 * 64, "without the breaker: 64 callers x 4 attempts x 5 = 1,280"


def test_once_the_circuit_opens_the_remaining_calls_fail_fast_saying_why() -> None:
    """Issue 14.2: `run` against a failing judge waited out every retry (212 s for 3 traces)."""
    with OpenAIServer(faults={"500": 1.0}) as server:
        config = judge_config(server, breaker={**FAST_BREAKER, "max_wait_s": 60},
                              limits={"max_attempts": 8, "max_in_flight": 2})
        judge = build_llm_judge(config, JudgeRuntime(), backoff=Backoff(base_s=0.05))
        started = time.monotonic()
        verdicts = judge_all(judge, [prompt(note=str(i)) for i in range(40)])
        elapsed = time.monotonic() - started
        sent = server.stats.total
    assert {v.status for v in verdicts} == {"error"}
    reasons = Counter(v.reason for v in verdicts)
    assert reasons[CIRCUIT_OPEN_REASON] >= 30, reasons
    assert all(r.startswith(CIRCUIT_OPEN_REASON) and "InternalServerError" in r
               for r in reasons if r != CIRCUIT_OPEN_REASON), "calls cut short keep their cause"
    assert sent < 15, f"{sent} requests: 40 calls x 8 attempts would have been 320"
    assert elapsed < 30, "nobody waited for the circuit (max_wait_s 60)"


def test_in_service_mode_calls_wait_for_the_circuit_and_recover_with_the_provider() -> None:
    with OpenAIServer(faults=["500"] * 3) as server:
        config = judge_config(server, breaker={**FAST_BREAKER, "max_wait_s": 5},
                              limits={"max_attempts": 20, "max_in_flight": 4})
        runtime = JudgeRuntime(wait_for_open_circuit=True)
        judge = build_llm_judge(config, runtime, backoff=Backoff(base_s=0.01))
        verdicts = judge_all(judge, [prompt(note=str(i)) for i in range(5)])
    assert [v.status for v in verdicts] == ["scored"] * 5
    assert runtime.breaker(config).state is CircuitState.CLOSED


def test_in_service_mode_a_judge_that_stays_down_ends_after_max_wait() -> None:
    with OpenAIServer(faults={"500": 1.0}) as server:
        config = judge_config(server, breaker=FAST_BREAKER, limits={"max_attempts": 8})
        runtime = JudgeRuntime(wait_for_open_circuit=True)
        judge = build_llm_judge(config, runtime, backoff=Backoff(base_s=0.01))
        verdicts = judge_all(judge, [prompt(note=str(i)) for i in range(10)])
        sent = server.stats.total
    paused = [v for v in verdicts if v.reason.startswith(f"{CIRCUIT_OPEN_REASON}: waited 0.6s")]
    assert len(paused) >= 5, [v.reason for v in verdicts]
    assert sent < 40, f"{sent} requests: 10 calls x 8 attempts would have been 80"


@pytest.fixture
def servers() -> Iterator[tuple[OpenAIServer, OpenAIServer]]:
    with OpenAIServer(faults={"500": 1.0}) as primary, OpenAIServer() as fallback:
        yield primary, fallback


def test_an_open_circuit_sends_calls_to_the_fallback_named_in_the_evaluation(
        servers: tuple[OpenAIServer, OpenAIServer], tmp_path: Path) -> None:
    primary, fallback = servers
    write_judge(tmp_path, judge_config(primary, name="primary", breaker=FAST_BREAKER,
                                       fallbacks=["backup"], limits={"max_attempts": 2}))
    write_judge(tmp_path, judge_config(fallback, name="backup", model="openai/backup-model"))
    judge = load_judge("primary", tmp_path, runtime=JudgeRuntime())
    items = [WorkItem(Trace(trace_id=f"t{i}", output="Paris."), SampleDecision(True, "random", 1))
             for i in range(12)]
    rubric = published_rubric()
    batch = asyncio.run(evaluate_batch(items, [rubric], judge, run_id="r"))
    assert {e.status for e in batch.evaluations} == {"scored"}
    assert {e.judge for e in batch.evaluations} == {"backup"}
    assert all(e.judge_hash == judge.candidates[1].config_hash for e in batch.evaluations)
    primary_hash = judge.config_hash
    assert [e.evaluation_id for e in batch.evaluations] == [
        evaluation_id_for(f"t{i}", rubric.content_hash, primary_hash) for i in range(12)], \
        "keyed on the judge asked for: a retry stays idempotent"
    assert {c.judge for c in batch.judge_calls} == {"primary", "backup"}
    assert primary.stats.total < 20, "no call burned its retries on the failing primary"
    ledger_per_evaluation = {e.evaluation_id: e.attempts for e in batch.evaluations}
    for evaluation_id, attempts in ledger_per_evaluation.items():
        assert attempts == sum(c.evaluation_id == evaluation_id for c in batch.judge_calls)


def test_a_rate_limit_wait_past_the_bound_sends_calls_to_the_fallback(tmp_path: Path) -> None:
    with OpenAIServer() as primary, OpenAIServer() as fallback:
        write_judge(tmp_path, judge_config(primary, name="primary", fallbacks=["backup"],
                                           limits={"requests_per_minute": 2,
                                                   "fallback_after_wait_s": 0.5}))
        write_judge(tmp_path, judge_config(fallback, name="backup"))
        judge = load_judge("primary", tmp_path, runtime=JudgeRuntime())
        verdicts = judge_all(judge, [prompt(note=str(i)) for i in range(6)])
        assert (primary.stats.total, fallback.stats.total) == (1, 5)
    assert [v.judge for v in verdicts].count("backup") == 5
    assert all(v.status == "scored" for v in verdicts)
