"""The judge as a chain of wrappers (evaluator/judges/factory.py): the factory builds them in the
order its docstring documents, and each wrapper does its one job alone, around an in-memory
JudgeClient or Sender double (no server, no network, no sleeping)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from evaluator.core.retry import Backoff
from evaluator.core.rows import CACHED, ERROR, OK
from evaluator.core.usage import Usage
from evaluator.judges import factory
from evaluator.judges.attempt import (
    Attempt,
    CallFailed,
    CircuitRefused,
    Deferred,
    TransportSender,
    WaitTooLong,
)
from evaluator.judges.base import JudgeVerdict
from evaluator.judges.breaker import BreakerGate, CircuitBreaker, CircuitState
from evaluator.judges.budget import BUDGET_EXHAUSTED, RunBudget
from evaluator.judges.cache import CachedJudge, JudgeCache
from evaluator.judges.config import JudgeBreaker, JudgeConfig, JudgePrices
from evaluator.judges.fallback import FallbackJudge
from evaluator.judges.inflight import InFlightLimit
from evaluator.judges.ledger_rows import CallRows, LedgerSender
from evaluator.judges.preflight import RequireKey
from evaluator.judges.ratelimit import LocalRateLimiter, Rate, RateLimitedSender, WaitLog
from evaluator.judges.retrying import Retrying
from evaluator.judges.runtime import JudgeRuntime
from evaluator.judges.transport import Reply
from tests.support.judging import KEY, KEY_ENV, RUBRIC, TRACE, judge_all, prompt, write_judge

REPLY = Reply('{"reasoning": "backed by the context", "label": "supported"}', "stop", 12, 5, None)


class StubJudge:
    """A JudgeLink double: answers `verdict` (or raises `raises`) and remembers how it was asked."""

    def __init__(self, name: str = "stub", verdict: JudgeVerdict | None = None,
                 raises: Exception | None = None):
        self.name, self.config_hash = name, f"{name}-hash"
        self.verdict = verdict or JudgeVerdict(status="scored", label="supported", score=1.0)
        self.raises = raises
        self.asked: list[dict[str, Any]] = []

    async def judge(self, rubric, trace, prompt, *, sample: int = 0,
                    may_defer: bool = False) -> JudgeVerdict:
        self.asked.append({"sample": sample, "may_defer": may_defer})
        if self.raises is not None:
            raise self.raises
        return self.verdict


class StubSender:
    """A Sender (or transport) double: raises the scripted failures in turn, then replies."""

    name = "stub"

    def __init__(self, *failures: Exception):
        self.failures = list(failures)
        self.sent = 0

    async def send(self, attempt: Attempt) -> Reply:
        self.sent += 1
        if self.failures:
            raise self.failures.pop(0)
        return REPLY

    async def complete(self, request: dict[str, Any], api_key: str | None) -> Reply:
        self.request = request
        return await self.send(Attempt(request, 0, api_key))

    def structured_output_mode(self) -> str:
        return "json_schema"


def failure(status: int, name: str = "InternalServerError") -> Exception:
    error = type(name, (Exception,), {})(f"HTTP {status}")
    error.status_code = status
    return error


def attempt(**fields: Any) -> Attempt:
    return Attempt({"messages": [{"role": "user", "content": "x" * 40}]}, 16, None, **fields)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def config(**fields: Any) -> JudgeConfig:
    data = {"name": "primary", "model": "openai/primary", "api_base": "http://127.0.0.1:9/v1",
            "api_key_env": KEY_ENV, "params": {"temperature": 0}, **fields}
    return JudgeConfig.model_validate(data)


# -- the factory -------------------------------------------------------------------------------

def documented_order() -> list[str]:
    return re.findall(r"^ {4}(\w+) +\w+\.py", factory.__doc__ or "", re.MULTILINE)


def test_the_factory_builds_every_wrapper_in_the_documented_order(tmp_path: Path) -> None:
    write_judge(tmp_path, config(samples=3, fallbacks=["backup"],
                                 limits={"requests_per_minute": 600}))
    write_judge(tmp_path, config(name="backup", model="openai/backup"))
    judge = factory.load_judge("primary", tmp_path, JudgeRuntime(cache=JudgeCache()),
                               budget=RunBudget(1.0))
    built = [type(layer).__name__ for layer in factory.layers(judge)]
    assert built[:-1] == documented_order() == [
        "BudgetedJudge", "PanelJudge", "FallbackJudge", "RequireKey", "CachedJudge", "LLMJudge",
        "Retrying", "InFlightLimit", "BreakerGate", "RateLimitedSender", "LedgerSender",
        "TransportSender"]
    assert built[-1] == "OpenAITransport"


def test_wrappers_a_config_does_not_need_are_left_out() -> None:
    judge = factory.build_llm_judge(config(params={"temperature": 0.7}), JudgeRuntime())
    assert [type(layer).__name__ for layer in factory.layers(judge)][:-1] == [
        "RequireKey", "LLMJudge", "Retrying", "InFlightLimit", "BreakerGate", "LedgerSender",
        "TransportSender"]


def test_the_assembled_chain_judges_through_an_in_memory_transport(monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    transport = StubSender(failure(503))
    judge = factory.build_llm_judge(config(prices={"input_per_mtok": 1, "output_per_mtok": 2}),
                                    JudgeRuntime(cache=JudgeCache()), transport=transport,
                                    backoff=Backoff(base_s=0.001))
    first, again = judge_all(judge, [prompt()]), judge_all(judge, [prompt()])
    assert (first[0].status, first[0].label, first[0].attempts) == ("scored", "supported", 2)
    assert [c.status for c in first[0].calls] == [ERROR, OK]
    assert first[0].usage.cost_usd == pytest.approx((12 * 1 + 5 * 2) / 1e6)
    assert again[0].cached and transport.sent == 2


# -- each wrapper alone ------------------------------------------------------------------------

def test_require_key_alone(monkeypatch) -> None:
    inner = StubJudge()
    wrapped = RequireKey(inner, config(api_base=None))
    monkeypatch.delenv(KEY_ENV, raising=False)
    verdict = run(wrapped.judge(RUBRIC, TRACE, prompt()))
    assert verdict.status == "error" and KEY_ENV in verdict.reason and not inner.asked
    monkeypatch.setenv(KEY_ENV, KEY)
    assert run(wrapped.judge(RUBRIC, TRACE, prompt(), sample=2)).status == "scored"
    assert inner.asked == [{"sample": 2, "may_defer": False}]


def test_cached_judge_alone() -> None:
    inner = StubJudge()
    cached = CachedJudge(inner, lambda labels, claims: "identity", JudgeCache(),
                         CallRows("stub", "m", "t"), ttl_s=60)
    miss = run(cached.judge(RUBRIC, TRACE, prompt()))
    hit = run(cached.judge(RUBRIC, TRACE, prompt()))
    other_sample = run(cached.judge(RUBRIC, TRACE, prompt(), sample=1))
    assert (miss.cached, hit.cached, other_sample.cached) == (False, True, False)
    assert (hit.label, hit.usage.cost_usd, [c.status for c in hit.calls]) == ("supported", 0.0, [CACHED])
    assert len(inner.asked) == 2


def test_cached_judge_does_not_keep_an_unusable_verdict() -> None:
    inner = StubJudge(verdict=JudgeVerdict(status="unscored", reason="no label"))
    cached = CachedJudge(inner, lambda labels, claims: "identity", JudgeCache(),
                         CallRows("stub", "m", "t"), ttl_s=60)
    run(cached.judge(RUBRIC, TRACE, prompt()))
    assert not run(cached.judge(RUBRIC, TRACE, prompt())).cached and len(inner.asked) == 2


def test_fallback_judge_alone_carries_the_ledger_and_names_who_answered() -> None:
    spent = CallRows("first", "m", "t").row(0, 1, ERROR, 3.0, Usage(cost_usd=0.0))
    first = StubJudge("first", raises=Deferred("circuit open", [spent]))
    second = StubJudge("second")
    verdict = run(FallbackJudge([first, second]).judge(RUBRIC, TRACE, prompt()))
    assert (verdict.status, verdict.judge, verdict.judge_hash) == ("scored", "second", "second-hash")
    assert verdict.calls == [spent] and verdict.attempts == 1
    assert (first.asked, second.asked) == ([{"sample": 0, "may_defer": True}],
                                           [{"sample": 0, "may_defer": False}])


def test_fallback_judge_keeps_the_first_answer_unnamed() -> None:
    second = StubJudge("second")
    verdict = run(FallbackJudge([StubJudge("first"), second]).judge(RUBRIC, TRACE, prompt()))
    assert verdict.judge is None and not second.asked


def test_budgeted_judge_alone() -> None:
    inner = StubJudge()
    verdict = run(RunBudget(1.0, spent_usd=1.0).wrap(inner).judge(RUBRIC, TRACE, prompt()))
    assert verdict.status == "skipped" and BUDGET_EXHAUSTED in verdict.reason and not inner.asked


def retrying(inner: StubSender, breaker: CircuitBreaker | None = None, **limits: Any) -> Retrying:
    judge = config(limits={"max_attempts": 3, **limits})
    return Retrying(inner, judge, breaker or CircuitBreaker("primary", judge.breaker),
                    Backoff(base_s=0.001), waits_for_open_circuit=lambda: False)


def test_retrying_alone_tries_transient_failures_again() -> None:
    inner = StubSender(failure(503), failure(429, "RateLimitError"))
    sent = attempt()
    assert run(retrying(inner).send(sent)) is REPLY
    assert (inner.sent, sent.failures) == (3, 2)


@pytest.mark.parametrize(("failures", "reason"), [
    ([failure(400, "BadRequestError")], "judge call rejected"),
    ([failure(500)] * 3, "judge call failed after"),
])
def test_retrying_alone_ends_the_call_with_the_reason(failures: list[Exception], reason: str) -> None:
    inner = StubSender(*failures)
    with pytest.raises(CallFailed, match=reason):
        run(retrying(inner).send(attempt()))
    assert inner.sent == len(failures)


def test_retrying_alone_defers_instead_of_failing_when_a_fallback_is_behind() -> None:
    with pytest.raises(Deferred):
        run(retrying(StubSender(failure(401, "AuthenticationError"))).send(attempt(may_defer=True)))


def test_in_flight_limit_alone() -> None:
    class Counting(StubSender):
        now = peak = 0

        async def send(self, attempt: Attempt) -> Reply:
            self.now += 1
            self.peak = max(self.peak, self.now)
            await asyncio.sleep(0)
            self.now -= 1
            return REPLY

    inner = Counting()
    limit = InFlightLimit(inner, max_in_flight=2)

    async def many() -> None:
        await asyncio.gather(*(limit.send(attempt()) for _ in range(6)))

    run(many())
    assert inner.peak == 2


def test_breaker_gate_alone() -> None:
    breaker = CircuitBreaker("stub", JudgeBreaker(consecutive_failures=2), clock=lambda: 0.0)
    inner = StubSender(failure(500), failure(500))
    gate = BreakerGate(inner, breaker)
    for _ in range(2):
        with pytest.raises(Exception, match="HTTP 500"):
            run(gate.send(attempt()))
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitRefused):
        run(gate.send(attempt()))
    assert inner.sent == 2


def test_rate_limited_sender_alone() -> None:
    limiter = LocalRateLimiter((Rate.per_minute("requests", 2),), clock=lambda: 0.0)
    inner = StubSender()
    limited = RateLimitedSender(inner, limiter, WaitLog("stub"), defer_after_s=0.5)
    assert run(limited.send(attempt(may_defer=True))) is REPLY
    with pytest.raises(WaitTooLong):
        run(limited.send(attempt(may_defer=True)))
    assert inner.sent == 1


def test_ledger_sender_alone_prices_each_request() -> None:
    prices = JudgePrices(input_per_mtok=1, output_per_mtok=2)
    ledger = LedgerSender(StubSender(failure(500), failure(408, "Timeout")),
                          CallRows("stub", "m", "t"), prices)
    sent = attempt(sample=1)
    for _ in range(2):
        with pytest.raises(Exception, match="HTTP"):
            run(ledger.send(sent))
    run(ledger.send(sent))
    assert [(c.status, c.attempt, c.http_status, c.usage.cost_usd) for c in sent.calls] == [
        (ERROR, 1, 500, 0.0), (ERROR, 2, None, None), (OK, 3, 200, pytest.approx(22 / 1e6))]
    assert {c.sample for c in sent.calls} == {1}


def test_transport_sender_alone_adds_max_tokens() -> None:
    transport = StubSender()
    run(TransportSender(transport).send(attempt()))
    assert transport.request["max_tokens"] == 16
