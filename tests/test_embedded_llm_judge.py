"""`evaluator run` with an LLM judge: the real litellm client over HTTP to a local server."""

from __future__ import annotations

import json

import pytest

from evaluator.core.settings import Settings
from evaluator.store import Store
from evaluator.worker.embedded import run_embedded
from tests.support.judging import local_judge_settings
from tests.support.openai_server import OpenAIServer

EXPECTED = {"hallucination": "hallucinated", "relevance": "mostly_relevant",
            "refusal": "complied", "faithfulness": "partially_faithful"}


def _write_traces(path, n):
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({
                "trace_id": f"llm-{i:03d}",
                "input": f"What does plan {i} include?",
                "context": [f"Plan {i} includes 10 GB of storage."] if i % 4 else [],
                "output": f"Plan {i} includes 10 GB of storage.",
                "expected": f"Plan {i} comes with 10 GB.",
            }) + "\n")


@pytest.fixture
def judge_settings(tmp_path, monkeypatch):
    def make(server: OpenAIServer) -> Settings:
        return local_judge_settings(
            tmp_path / "judges", server, monkeypatch, "local-test",
            model="openai/judge-test", prices={"input_per_mtok": 0.15, "output_per_mtok": 0.60},
            limits={"max_in_flight": 8, "timeout_s": 2, "max_attempts": 3})
    return make


@pytest.mark.parametrize("in_processes", [False, True], ids=["one process", "read and judged in processes"])
def test_run_with_litellm_judge_stores_scored_verdicts(tmp_path, judge_settings, in_processes):
    traces = tmp_path / "traces.jsonl"
    _write_traces(traces, 12)
    db = tmp_path / "llm.duckdb"
    with OpenAIServer() as server:
        report = run_embedded(traces, db, "local-test", sample_rate=1.0,
                              settings=judge_settings(server), read_in_a_process=in_processes,
                              judge_in_a_process=in_processes)
        calls = server.stats.total
    with Store(db, read_only=True) as store:
        evaluations = store.evaluations()
    assert report.sampled == 12 and len(evaluations) == 60
    skipped = [e for e in evaluations if e.status == "skipped"]
    assert {e.rubric for e in skipped} == {"faithfulness"} and len(skipped) == 3
    scored = [e for e in evaluations if e.status == "scored"]
    assert len(scored) == 57 == calls
    assert sum(e.rubric == "correctness" for e in scored) == 12, "graded against the reference"
    for evaluation in scored:
        assert evaluation.judge == "local-test" and evaluation.usage.input_tokens > 0
        assert evaluation.usage.cost_usd is not None and evaluation.usage.cost_usd > 0
        assert evaluation.reasoning and evaluation.prompt_hash
        assert evaluation.label is not None and evaluation.passed is not None


def test_run_with_faulty_judge_ends_every_evaluation_in_a_terminal_status(tmp_path, judge_settings):
    traces = tmp_path / "traces.jsonl"
    _write_traces(traces, 40)
    db = tmp_path / "faulty.duckdb"
    faults = {"500": 0.1, "invalid_json": 0.1, "off_menu": 0.1}
    with OpenAIServer(faults=faults, seed=3) as server:
        run_embedded(traces, db, "local-test", sample_rate=1.0, settings=judge_settings(server))
    with Store(db, read_only=True) as store:
        evaluations = store.evaluations()
    assert len(evaluations) == 200
    assert len({e.evaluation_id for e in evaluations}) == 200
    statuses = {e.status for e in evaluations}
    assert "unscored" in statuses and "scored" in statuses
    for evaluation in evaluations:
        if evaluation.status != "scored":
            assert evaluation.reason
        if evaluation.status == "unscored":
            assert evaluation.raw_reply is not None
