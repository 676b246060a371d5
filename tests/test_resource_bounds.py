"""Resource bounds, each configurable: the per-field text limit of a trace
(EVALUATOR_MAX_TEXT_CHARS), a run's judge budget (`--max-cost`), and the memory ceiling of the
span exporter's buffer (`max_buffered_bytes`)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from evaluator.core.errors import ConfigError
from evaluator.core.records import MAX_TEXT_CHARS, parse_trace
from evaluator.core.settings import Settings
from evaluator.core.usage import Usage
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.ingest.otel import EvaluatorSpanExporter
from evaluator.judges.base import JudgeVerdict
from evaluator.judges.budget import BUDGET_EXHAUSTED, RunBudget
from evaluator.queue.messages import decode_items, encode_items
from evaluator.rubrics import RubricRegistry, render
from evaluator.sampling.policy import SamplingPolicy
from evaluator.store import Store
from tests.support.figures import record
from tests.support.openai_server import OpenAIServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"
RUBRICS = RubricRegistry.load(ROOT / "rubrics")


# -- per-trace size limit ---------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1_000, 5_000, 250_000])
def test_text_limit_is_configurable_and_marked(monkeypatch, limit):
    monkeypatch.setenv("EVALUATOR_MAX_TEXT_CHARS", str(limit))
    limit_in_force = Settings.from_env().max_text_chars
    assert limit_in_force == limit
    big = "word " * 60_000  # 300,000 characters
    trace = parse_trace({"trace_id": "t", "input": "q" * (limit + 1), "output": big,
                         "context": ["short", big]}, limit_in_force)
    expected_cut = ["context", "input", "output"] if limit < len(big) else ["input"]
    assert trace.truncated == expected_cut
    for text in (trace.question, trace.output, trace.context[1]):
        assert len(text) <= limit
    kept, mark = trace.question.split("\n[... truncated by evaluator: ")
    assert mark == f"{limit + 1 - len(kept)} characters removed ...]", "the mark counts exactly"
    assert trace.context[0] == "short"
    decision = SampleDecision(True, "random", 1.0)
    again, dead = decode_items(encode_items([WorkItem(trace, decision)]), "test", limit_in_force)
    assert not dead and again[0].trace == trace, "the worker's re-validation keeps it as it is"


def test_text_limit_default_and_bad_values(monkeypatch):
    monkeypatch.delenv("EVALUATOR_MAX_TEXT_CHARS", raising=False)
    assert Settings.from_env().max_text_chars == MAX_TEXT_CHARS
    for bad in ("ten", "-5", "999"):
        monkeypatch.setenv("EVALUATOR_MAX_TEXT_CHARS", bad)
        with pytest.raises(ConfigError, match="EVALUATOR_MAX_TEXT_CHARS"):
            Settings.from_env()


def test_truncation_reaches_the_judge_prompt_and_the_stored_evaluation(tmp_path):
    traces = tmp_path / "big.jsonl"
    rows = [{"trace_id": "huge", "input": "What is in the report?", "output": "x" * 10_000_000,
             "context": ["The report lists revenue."]},
            {"trace_id": "small", "input": "Hi?", "output": "Hello.", "context": ["Greeting."]}]
    traces.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    db = tmp_path / "bounds.duckdb"
    env = {**os.environ, "EVALUATOR_MAX_TEXT_CHARS": "2000", "EVALUATOR_JUDGE_CACHE": "off"}
    result = subprocess.run([sys.executable, "-m", "evaluator", "run", "--traces", str(traces),
                             "--sample-rate", "1.0", "--db", str(db), "--json"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with Store(db, read_only=True) as store:
        flags = dict(store.conn.execute(
            "SELECT trace_id, bool_and(truncated) FROM evaluations GROUP BY trace_id").fetchall())
        stored = {t.trace.trace_id: t.trace for t in store.traces()}
    assert flags == {"huge": True, "small": False}
    assert len(stored["huge"].output) <= 2000 and stored["huge"].truncated == ["output"]
    prompt = render(RUBRICS.get("hallucination"), stored["huge"])
    user = prompt.messages[-1]["content"]
    assert user.startswith(
        "Note: these fields were too long and were truncated before evaluation: output")
    assert "characters removed" in user and prompt.truncated


# -- per-run judge budget ---------------------------------------------------------------------


class FixedCostJudge:
    name, config_hash = "fixed", "0" * 16

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.calls = 0

    async def judge(self, rubric, trace, prompt) -> JudgeVerdict:
        self.calls += 1
        await asyncio.sleep(0.001)
        return JudgeVerdict(status="scored", label="factual", usage=Usage(cost_usd=self.cost))


def test_budget_stops_calls_at_the_cap_with_one_wave_of_overshoot_at_most():
    budget = RunBudget(max_cost_usd=1.0)
    inner = FixedCostJudge(cost=0.03)
    judge = budget.wrap(inner)
    assert (judge.name, judge.config_hash) == (inner.name, inner.config_hash)

    async def many(count: int, in_flight: int) -> list[JudgeVerdict]:
        slots = asyncio.Semaphore(in_flight)

        async def one() -> JudgeVerdict:
            async with slots:
                return await judge.judge(None, None, None)
        return await asyncio.gather(*(one() for _ in range(count)))

    verdicts = asyncio.run(many(200, in_flight=8))
    skipped = [v for v in verdicts if v.status == "skipped"]
    assert len(verdicts) == 200 and inner.calls + len(skipped) == 200
    assert all(v.reason.startswith(BUDGET_EXHAUSTED) and v.attempts == 0 for v in skipped)
    assert 1.0 - 0.03 <= budget.spent_usd <= 1.0 + 8 * 0.03
    assert budget.refused == len(skipped)


def test_budget_of_a_resumed_run_counts_what_it_already_spent():
    budget = RunBudget(max_cost_usd=1.0, spent_usd=1.0)
    assert not asyncio.run(budget.start())
    with pytest.raises(ConfigError):
        RunBudget(max_cost_usd=-1)


def _priced_judge(directory: Path, server: OpenAIServer) -> Path:
    directory.mkdir()
    (directory / "priced.yaml").write_text(
        f"name: priced\nkind: litellm\nmodel: openai/priced\napi_base: {server.base_url}\n"
        "api_key_env: PRICED_JUDGE_KEY\nparams: {temperature: 0}\n"
        "prices: {input_per_mtok: 100, output_per_mtok: 100}\n"
        "limits: {max_in_flight: 4, timeout_s: 10, max_attempts: 2}\n", encoding="utf-8")
    return directory


def test_run_with_max_cost_skips_the_rest_with_a_reason(tmp_path):
    traces = tmp_path / "traces.jsonl"
    traces.write_text("\n".join(SAMPLE.read_text(encoding="utf-8").splitlines()[:40]) + "\n",
                      encoding="utf-8")
    db, max_cost = tmp_path / "budget.duckdb", 1.0
    with OpenAIServer(latency_ms=20) as server:
        judges = _priced_judge(tmp_path / "judges", server)
        env = {**os.environ, "EVALUATOR_JUDGES_DIR": str(judges), "PRICED_JUDGE_KEY": "sk-priced",
               "EVALUATOR_JUDGE_CACHE": "off"}
        result = subprocess.run(
            [sys.executable, "-m", "evaluator", "run", "--traces", str(traces), "--judge", "priced",
             "--sample-rate", "1.0", "--db", str(db), "--max-cost", str(max_cost), "--json",
             "--no-preflight"],
            env=env, capture_output=True, text=True, timeout=180)
        requests = server.stats.total
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    with Store(db, read_only=True) as store:
        rows = store.conn.execute(
            "SELECT trace_id, rubric, status, reason, cost_usd FROM evaluations").fetchall()
    spent = sum(cost or 0 for *_, cost in rows)
    over_budget = [r for r in rows if r[2] == "skipped" and r[3].startswith(BUDGET_EXHAUSTED)]
    judged = [row for row in rows if row[4]]
    biggest_call = max(cost for *_, cost in judged)
    record("run_budget", max_cost_usd=max_cost, spent_usd=round(spent, 4), judged=len(judged),
           skipped_over_budget=len(over_budget), evaluations=len(rows))
    assert len(rows) == len({(t, r) for t, r, *_ in rows}) == 40 * 5, "every evaluation is stored"
    assert over_budget and judged
    assert requests == len(judged), "no call was made past the budget"
    assert max_cost - biggest_call <= spent <= max_cost + 4 * biggest_call
    assert summary["budget"]["max_cost_usd"] == max_cost
    assert summary["budget"]["skipped"] == len(over_budget)


def test_replay_with_max_cost(tmp_path, monkeypatch):
    from evaluator.regression.replay import start_replay

    dataset = tmp_path / "items.jsonl"
    dataset.write_text("".join(json.dumps({"id": f"item-{i}", "input": "What is the refund window?",
                                           "context": ["Refunds within 30 days."],
                                           "output": f"Refunds within 30 days ({i}).",
                                           "expected_labels": {}, "label_source": "human",
                                           "metadata": {}}) + "\n"
                               for i in range(30)), encoding="utf-8")
    with OpenAIServer(latency_ms=5) as server:
        monkeypatch.setenv("PRICED_JUDGE_KEY", "sk-priced")
        monkeypatch.setenv("EVALUATOR_JUDGE_CACHE", "off")
        settings = Settings.from_env(judges_dir=_priced_judge(tmp_path / "judges", server))
        report = start_replay(dataset, tmp_path / "replay.duckdb", settings, ["faithfulness"],
                              "priced", concurrency=4, max_cost_usd=0.2)
        requests = server.stats.total
    statuses = {s.rubric: s for s in report.summaries}
    with Store(tmp_path / "replay.duckdb", read_only=True) as store:
        spent, skipped = store.conn.execute(
            "SELECT sum(cost_usd), count(*) FILTER (WHERE reason LIKE 'run judge budget%')"
            " FROM evaluations").fetchone()
    assert report.status == "completed" and report.done == 30 and "faithfulness" in statuses
    assert skipped > 0 and requests == 30 - skipped and spent <= 0.2 + 4 * spent / requests


# -- exporter buffer memory ceiling ---------------------------------------------------------------


@pytest.mark.parametrize("ceiling", [500_000, 4_000_000])
@pytest.mark.parametrize("text", ["ascii", "wide"])
def test_exporter_buffer_stays_under_its_memory_ceiling(ceiling, text):
    """Unfinished traces with 20 KB answers flood the exporter; its buffer is bounded by the
    configured bytes, measured with tracemalloc, for ASCII and for 4-byte characters alike."""
    payload = ("y" if text == "ascii" else "\U0001F600") * 5_000
    exporter = EvaluatorSpanExporter(sink=lambda items: None, policy=SamplingPolicy(rate=1.0),
                                     mask=lambda trace: trace, max_buffered_spans=1_000_000,
                                     max_buffered_bytes=ceiling)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    worst = 0
    for index in range(1_000):
        root = tracer.start_span("request")  # never ends: its trace waits in the buffer
        context = trace_api.set_span_in_context(root)
        with tracer.start_as_current_span("chat", context=context) as span:
            span.set_attributes({"gen_ai.operation.name": "chat",
                                 "gen_ai.completion.0.content": payload + str(index)})
        if index % 100 == 99:
            worst = max(worst, tracemalloc.get_traced_memory()[0] - before)
    tracemalloc.stop()
    stats = exporter.stats
    record("exporter_memory_ceiling", ceiling_bytes=ceiling, text=text, worst_growth_bytes=worst,
           dropped_buffer_full=stats["dropped_buffer_full"])
    assert stats["buffered_bytes"] <= ceiling and stats["dropped_buffer_full"] > 0
    assert worst < ceiling * 1.5 + 1_000_000, f"grew by {worst:,} B for a {ceiling:,} B ceiling"
    provider.shutdown()
