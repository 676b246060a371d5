"""The circuit breaker (closed/open/half-open) and the fallback judges it and the rate limit
send calls to."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluator.judge_config import JudgeBreaker
from evaluator.judges.breaker import CircuitBreaker, CircuitState
from evaluator.judges.factory import load_judge
from evaluator.judges.llm import LLMJudge
from evaluator.judges.runtime import JudgeRuntime
from evaluator.pipeline import WorkItem, evaluate_batch
from evaluator.records import Trace, evaluation_id_for
from evaluator.sampling import SampleDecision
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


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: FakeClock, **settings: float) -> CircuitBreaker:
    return CircuitBreaker("j", JudgeBreaker(**{"consecutive_failures": 3, "cooldown_s": 10,
                                              **settings}), clock)


def call(b: CircuitBreaker, failed: bool) -> bool:
    """One admitted call with its outcome; False when the breaker did not admit it."""
    admitted, probe = b.try_acquire()
    if admitted:
        b.record(failed, probe, "boom" if failed else None)
    return admitted


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def test_opens_after_consecutive_failures_and_a_probe_closes_it(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    b = breaker(clock)
    with caplog.at_level(logging.INFO, logger="evaluator.judges.breaker"):
        assert [call(b, True) for _ in range(3)] == [True] * 3
        assert b.state is CircuitState.OPEN and b.times_opened == 1
        assert not call(b, False), "open: no calls"
        assert b.retry_in_s() == pytest.approx(10)
        clock.now += 10
        assert b.state is CircuitState.HALF_OPEN
        assert b.try_acquire() == (True, True), "one probe"
        assert b.try_acquire() == (False, False), "and only one"
        b.record(False, True)
        assert b.state is CircuitState.CLOSED
    assert "circuit OPEN after 3 consecutive failures (last: boom)" in caplog.text
    assert "circuit closed" in caplog.text


def test_a_failed_probe_opens_it_again_and_an_abandoned_probe_frees_the_slot() -> None:
    clock = FakeClock()
    b = breaker(clock)
    for _ in range(3):
        call(b, True)
    clock.now += 10
    admitted, probe = b.try_acquire()
    b.abandon(probe)
    assert b.try_acquire() == (True, True)
    b.record(True, True, "still down")
    assert b.state is CircuitState.OPEN and b.times_opened == 2


def test_opens_on_the_failure_rate_and_ignores_late_outcomes_while_open() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=100, failure_rate=0.5, window=10)
    for i in range(10):
        call(b, i % 2 == 0)
    assert b.state is CircuitState.OPEN
    b.record(False, False)  # a call that started before it opened
    assert b.state is CircuitState.OPEN


def test_a_judge_that_keeps_failing_is_paused_instead_of_burning_retries() -> None:
    with OpenAIServer(faults={"500": 1.0}) as server:
        config = judge_config(server, breaker=FAST_BREAKER, limits={"max_attempts": 8})
        judge = LLMJudge(config, runtime=JudgeRuntime(), backoff_base_s=0.01)
        verdicts = judge_all(judge, [prompt(note=str(i)) for i in range(10)])
        sent = server.stats.total
    assert {v.status for v in verdicts} == {"error"}
    paused = [v for v in verdicts if "circuit is open" in v.reason]
    assert len(paused) >= 8, [v.reason for v in verdicts]  # the others were the probe calls
    assert sent < 30, f"{sent} requests: 10 calls x 8 attempts would have been 80"
    assert judge.breaker.times_opened >= 1


def test_the_paused_judge_recovers_once_the_provider_does() -> None:
    with OpenAIServer(faults=["500"] * 3) as server:
        config = judge_config(server, breaker={**FAST_BREAKER, "max_wait_s": 5},
                              limits={"max_attempts": 20})
        judge = LLMJudge(config, runtime=JudgeRuntime(), backoff_base_s=0.01)
        verdicts = judge_all(judge, [prompt(note=str(i)) for i in range(5)])
    assert [v.status for v in verdicts] == ["scored"] * 5
    assert judge.breaker.state is CircuitState.CLOSED


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
    assert all(e.judge_hash == judge.fallbacks[0].config_hash for e in batch.evaluations)
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
