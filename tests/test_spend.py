"""The daily judge budget: pacing math, spend counters (Redis, the DuckDB ledger) and the
producers that lower their random rate when spend runs ahead, never the always-rules."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluator.core.records import parse_trace
from evaluator.core.rows import JudgeCall
from evaluator.core.settings import Settings
from evaluator.core.usage import Usage
from evaluator.rubrics import RubricRegistry
from evaluator.sampling.policy import SamplingPolicy, decide
from evaluator.sampling.spend import (
    BudgetPacer,
    InMemorySpend,
    RedisSpend,
    pace_factor,
    spend_key,
)
from evaluator.store.ledger_spend import LedgerSpend
from tests.support.judging import local_judge_settings
from tests.support.openai_server import OpenAIServer

NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _call(cost: float | None, when: datetime = NOON) -> JudgeCall:
    return JudgeCall(call_id=f"c-{cost}-{when.isoformat()}", judge="j", model="m", transport="t",
                     sample=0, attempt=1, status="ok", usage=Usage(cost_usd=cost), created_at=when)


def _traces(n: int, prefix: str = "t", **fields) -> list:
    return [parse_trace({"trace_id": f"{prefix}-{i}", "output": "a", **fields}) for i in range(n)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- pacing -----------------------------------------------------------------------------------

@given(budget=st.floats(0.01, 1e4), spent=st.floats(0, 2e4), day=st.floats(0, 0.999))
def test_pace_factor_is_a_share_falling_with_spend(budget, spent, day):
    factor = pace_factor(budget, spent, day)
    assert 0.0 <= factor <= 1.0
    if spent <= budget * day:
        assert factor == 1.0, "on or behind pace: the full rate"
    if spent >= budget:
        assert factor == 0.0, "budget gone: no random sampling"
    if budget * day < spent < budget:
        assert factor == pytest.approx(min(1.0, (budget - spent) / (budget * (1 - day))))
    assert pace_factor(budget, spent + budget / 10, day) <= factor


def test_pace_factor_examples():
    assert pace_factor(100, 60, 0.5) == pytest.approx(0.8)  # 40 % left for 50 % of the day
    assert pace_factor(100, 90, 0.5) == pytest.approx(0.2)
    assert pace_factor(100, 50, 0.5) == 1.0
    assert pace_factor(0, 0, 0.5) == 0.0, "a zero budget allows no random sampling"


def test_pacer_reads_spend_once_a_second_and_scales_every_random_rate():
    spend, clock = InMemorySpend(), Clock()
    spend.record([_call(9.0)])
    reads = []

    class Counting:
        def spent_on(self, day: date) -> float:
            reads.append(day)
            return spend.spent_on(day)

    pacer = BudgetPacer(10.0, Counting(), clock=clock, now=lambda: NOON)
    policy = SamplingPolicy(rate=0.10, rubric_rates={"refusal": 0.5})
    paced = pacer.policy(policy)
    assert pacer.scale == pytest.approx(0.2) and paced.rate == pytest.approx(0.02)
    assert paced.rubric_rates["refusal"] == pytest.approx(0.1)
    for _ in range(100):
        assert pacer.policy(policy) is paced, "built once per scale"
    assert reads == [NOON.date()]
    clock.now = 1.0
    pacer.policy(policy)
    assert len(reads) == 2
    assert pacer.to_dict() == {"budget_usd": 10.0, "spent_today_usd": 9.0, "random_rate_scale": 0.2}
    assert "random sampling at 20% of its rate" in pacer.describe()


def test_pacer_keeps_its_last_scale_and_backs_off_when_spend_cannot_be_read(caplog):
    clock = Clock()
    readings = iter([10.0, ConnectionError("redis down"), ConnectionError("redis down"), 0.0, 0.0, 0.0,
                     0.0])
    attempts = []

    class Flaky:
        def spent_on(self, day: date) -> float:
            attempts.append(clock.now)
            value = next(readings)
            if isinstance(value, Exception):
                raise value
            return value

    pacer = BudgetPacer(10.0, Flaky(), clock=clock, now=lambda: NOON)
    assert pacer.current_scale() == 0.0
    for second in range(1, 8):
        clock.now = float(second)
        assert pacer.current_scale() == (0.0 if second < 4 else 1.0)
    assert attempts == [0.0, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0], \
        "after failures, reads wait 1 s, then 2 s; once back, every second again"
    assert "reading today's judge spend failed" in caplog.text


def test_paced_sampling_never_touches_the_always_rules_and_weights_follow_the_rate():
    spend = InMemorySpend()
    spend.record([_call(7.5)])
    pacer = BudgetPacer(10.0, spend, now=lambda: NOON)  # 75 % spent at noon: scale 0.5
    policy = pacer.policy(SamplingPolicy(rate=0.10))
    random = [decide(t, policy) for t in _traces(20_000)]
    share = sum(d.sampled for d in random) / len(random)
    print(f"random share at rate 0.10 paced to 0.5: {share:.4f}")
    assert 0.045 <= share <= 0.055
    assert all(d.weight == pytest.approx(20.0) for d in random if d.sampled)
    spend.record([_call(5.0)])  # over budget: no random sampling at all
    exhausted = BudgetPacer(10.0, spend, now=lambda: NOON).policy(SamplingPolicy(rate=0.10))
    assert not any(decide(t, exhausted).sampled for t in _traces(2_000))
    errors = [decide(t, exhausted) for t in _traces(200, "e", status="error")]
    assert all(d.sampled and d.reason == "error" and d.weight == 1.0 for d in errors)


def test_spend_is_counted_on_the_day_of_the_call_and_unknown_cost_counts_zero():
    spend = InMemorySpend()
    spend.record([_call(0.5), _call(None), _call(0.25, NOON - timedelta(days=1))])
    assert spend.spent_on(NOON.date()) == 0.5
    assert spend.spent_on((NOON - timedelta(days=1)).date()) == 0.25


# --- Redis: workers add, producers read -------------------------------------------------------

@pytest.mark.redis
def test_redis_counter_adds_up_per_day_and_expires(redis_url):
    import redis

    spend = RedisSpend.from_url(redis_url)
    spend.record([_call(0.5), _call(0.25), _call(1.0, NOON - timedelta(days=1))])
    RedisSpend.from_url(redis_url).record([_call(0.125)])  # a second worker
    assert spend.spent_on(NOON.date()) == pytest.approx(0.875)
    assert spend.spent_on((NOON - timedelta(days=1)).date()) == pytest.approx(1.0)
    assert spend.spent_on(date(2020, 1, 1)) == 0.0
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.ttl(spend_key(NOON.date())) <= 3 * 86_400


@pytest.fixture
def priced_judge(tmp_path, monkeypatch):
    """Settings whose judge `priced` answers from the local server at a known price."""
    def make(server: OpenAIServer) -> Settings:
        return local_judge_settings(tmp_path / "judges", server, monkeypatch, "priced",
                                    prices={"input_per_mtok": 150, "output_per_mtok": 600},
                                    limits={"max_in_flight": 8})
    return make


@pytest.mark.redis
def test_worker_spend_in_redis_paces_the_span_exporter(redis_url, priced_judge):
    """A worker judges through the real client and adds the cost to Redis; an exporter with a
    daily budget of exactly that spend then sends no random sample, but still every error."""
    from evaluator.ingest.otel import EvaluatorSpanExporter
    from evaluator.queue.channel import InMemoryChannel
    from evaluator.queue.messages import work_message
    from evaluator.worker.actors import WorkerContext, process_message
    from tests.test_otel_exporter import Collect, chat, keep, tracer_for

    spend = RedisSpend.from_url(redis_url)
    items = [{"trace": {"trace_id": f"w-{i}", "input": "Capital of France?", "output": "Paris.",
                        "context": ["Paris is the capital of France."]},
              "sample_reason": "random", "sample_weight": 10.0} for i in range(4)]
    with OpenAIServer() as server:
        settings = priced_judge(server)
        context = WorkerContext(RubricRegistry.load(settings.rubrics_dir), InMemoryChannel(),
                                settings.judges_dir, spend=spend)
        batch = asyncio.run(process_message(context, work_message(items, "priced", [], None)))
    costs = [c.usage.cost_usd for c in batch.judge_calls]
    assert len(costs) == 16 and all(c and c > 0 for c in costs)
    spent = spend.spent_on(datetime.now(UTC).date())
    assert spent == pytest.approx(sum(costs))

    sink = Collect()
    exporter = EvaluatorSpanExporter(sink=sink, mask=keep, spend=spend,
                                     policy=SamplingPolicy(rate=1.0, daily_budget_usd=spent))
    provider, tracer = tracer_for(exporter)
    for index in range(20):
        chat(tracer, answer=f"fine {index}")
    for index in range(5):
        chat(tracer, answer=f"failed {index}", **{"error.type": "timeout"})
    provider.shutdown()
    assert sorted(sink.outputs) == [f"failed {i}" for i in range(5)]
    assert {item.decision.reason for item in sink.items} == {"error"}


@pytest.mark.redis
def test_service_mode_exporter_reads_the_shared_counter(redis_url):
    """In service mode the exporter finds the workers' counter by itself."""
    import redis

    from evaluator.ingest.otel import EvaluatorSpanExporter
    from tests.test_otel_exporter import chat, keep, tracer_for

    RedisSpend.from_url(redis_url).record([_call(2.0, datetime.now(UTC))])
    exporter = EvaluatorSpanExporter(redis_url, mask=keep, batch_size=50,
                                     policy=SamplingPolicy(rate=1.0, daily_budget_usd=2.0))
    provider, tracer = tracer_for(exporter)
    for index in range(10):
        chat(tracer, answer=f"fine {index}")
    chat(tracer, answer="thumbs down", **{"user.feedback": "negative"})
    provider.shutdown()
    assert exporter.stats["traces_enqueued"] == 1
    assert redis.Redis.from_url(redis_url).llen("dramatiq:evaluator") == 1


# --- embedded: the DuckDB ledger --------------------------------------------------------------

def _write_traces(path, n: int, errors: int) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({
                "trace_id": f"b-{i:03d}", "input": f"What does plan {i} include?",
                "context": [f"Plan {i} includes 10 GB of storage."],
                "output": f"Plan {i} includes 10 GB of storage.",
                **({"status": "error"} if i < errors else {}),
            }) + "\n")


def test_embedded_runs_pace_to_todays_spend_in_the_ledger(tmp_path, priced_judge, monkeypatch):
    from click.testing import CliRunner

    from evaluator.cli import cli
    from evaluator.worker.embedded import run_embedded

    traces, db = tmp_path / "traces.jsonl", tmp_path / "budget.duckdb"
    _write_traces(traces, 30, errors=3)
    with OpenAIServer() as server:
        settings = priced_judge(server)
        first = run_embedded(traces, db, "priced", sample_rate=1.0, settings=settings,
                             rubric_refs=["relevance"])
        spent = LedgerSpend(db).spent_on(datetime.now(UTC).date())
        assert first.sampled == 30 and first.daily_budget is None and spent > 0

        paced = settings.model_copy(update={"daily_budget_usd": spent})
        second = run_embedded(traces, db, "priced", sample_rate=1.0, settings=paced,
                              rubric_refs=["relevance"])
        assert dict(second.sample_reasons) == {"error": 3}
        assert second.to_dict()["daily_budget"]["random_rate_scale"] == 0.0

        monkeypatch.setenv("EVALUATOR_DAILY_BUDGET_USD", "1000")
        monkeypatch.setenv("EVALUATOR_JUDGES_DIR", str(settings.judges_dir))
        monkeypatch.setenv("EVALUATOR_DB", str(db))
        result = CliRunner().invoke(cli, ["run", "--traces", str(traces), "--judge", "priced",
                                          "--sample-rate", "1", "--rubric", "relevance"])
    assert result.exit_code == 0, result.output
    assert "daily judge budget $1,000.00" in result.output
    assert "random sampling at 100% of its rate" in result.output
    assert "sampled 30" in result.output


def test_negative_budget_is_refused(monkeypatch):
    from evaluator.core.errors import ConfigError
    from evaluator.core.settings import Settings
    from evaluator.sampling.config import sampling_policy

    monkeypatch.setenv("EVALUATOR_DAILY_BUDGET_USD", "-1")
    with pytest.raises(ConfigError, match="0 or more USD"):
        sampling_policy(0.1, daily_budget_usd=Settings.from_env().daily_budget_usd)
    monkeypatch.setenv("EVALUATOR_DAILY_BUDGET_USD", "lots")
    with pytest.raises(ConfigError, match="EVALUATOR_DAILY_BUDGET_USD='lots' is not a number"):
        Settings.from_env()
