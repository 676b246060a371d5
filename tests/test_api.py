"""The Python API: `from evaluator import evaluate`, no queue, Redis or DuckDB unless asked."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from evaluator import Evaluated, evaluate, evaluate_async
from evaluator.core.errors import ConfigError
from evaluator.core.records import Evaluation
from evaluator.core.settings import Settings
from evaluator.store import Store
from tests.support.judging import local_judge_settings
from tests.support.openai_server import OpenAIServer


def test_import_evaluator_loads_nothing_else():
    code = "import sys, evaluator; print(sorted(m for m in sys.modules if m.startswith('evaluator.')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_a_list_of_items_gives_typed_evaluations_and_touches_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = evaluate([{"id": "a", "input": "How do I bake bread?", "output": "Knead, rise, bake at 220 C."},
                       "I'm sorry, but I can't help with that request."],
                      rubrics=["refusal", "relevance"], input="How do I bake bread?")
    assert isinstance(result, Evaluated) and all(isinstance(e, Evaluation) for e in result)
    assert [(e.trace_id, e.rubric) for e in result][:2] == [("a", "refusal"), ("a", "relevance")]
    assert result[2].trace_id.startswith("api-") and result[2].label == "refused"
    assert result[0].label == "complied" and result.cost_usd == 0.0 and not result.passed
    assert list(tmp_path.iterdir()) == []


def test_an_llm_judge_keeps_its_ledger_and_cache_in_memory(tmp_path, monkeypatch):
    with OpenAIServer() as server:
        settings = local_judge_settings(tmp_path / "judges", server, monkeypatch, "api-judge")
        monkeypatch.setenv("EVALUATOR_JUDGES_DIR", str(settings.judges_dir))
        first = evaluate("Paris. EXPECT_LABEL=refused", rubrics="refusal", judge="api-judge", input="Capital?")
        again = evaluate("Paris. EXPECT_LABEL=refused", rubrics="refusal", judge="api-judge", input="Capital?")
        requests = len(server.stats.requests)
    assert first[0].label == "refused" and len(first.judge_calls) == 1
    assert first.judge_calls[0].evaluation_id == first[0].evaluation_id
    assert again[0].cached and requests == 1  # the second call was answered by the cache


def test_db_stores_the_traces_evaluations_and_ledger(tmp_path):
    db = tmp_path / "api.duckdb"
    result = evaluate({"id": "t-1", "input": "Hi", "output": "Hello! How can I help?"}, rubrics=["refusal"], db=db)
    with Store(db, read_only=True) as store:
        assert [e.evaluation_id for e in store.evaluations()] == [result[0].evaluation_id]
        assert [t.trace.trace_id for t in store.traces()] == ["t-1"]


def test_inside_an_event_loop_the_async_variant_is_the_way(tmp_path):
    async def main() -> Evaluated:
        with pytest.raises(ConfigError, match="await evaluate_async"):
            evaluate("x", rubrics=["refusal"])
        return await evaluate_async("Sure, here it is.", rubrics=["refusal"])

    assert asyncio.run(main())[0].label == "complied"


def test_bad_items_and_rubrics_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown item field.*answer; an item has context, expected"):
        evaluate({"answer": "x"}, rubrics=["refusal"])
    with pytest.raises(Exception, match="unknown rubric 'toxicity'"):
        evaluate("x", rubrics=["toxicity"], settings=Settings.from_env())
