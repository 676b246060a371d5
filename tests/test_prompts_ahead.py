"""Prompts rendered ahead of the judge (the embedded run renders in the process that hands work to
its judging process, issue 23 item 1) give exactly the evaluations of prompts rendered when
judged: the same prompt hashes, the same render errors, the same skips."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import MappingProxyType

from evaluator.core.records import Trace
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.judges.factory import load_judge
from evaluator.rubrics import RenderedPrompt, RubricRegistry, missing_inputs
from evaluator.worker.pipeline import evaluate_items
from evaluator.worker.prompts_ahead import prompt_for, with_prompts

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = RubricRegistry.load(ROOT / "rubrics")
RUBRICS = REGISTRY.all()
"""Every version, the pairwise one too: rendered without a second output, it is an error."""
TRACES = [Trace.model_validate(json.loads(line)) for line in
          (ROOT / "datasets" / "sample_traces.jsonl").read_text(encoding="utf-8").splitlines()[:40]]


def _decision(n: int) -> SampleDecision:
    """Every other trace is picked by a higher rate than faithfulness's own, which skips some."""
    if n % 2:
        return SampleDecision(True, "random", 1.0)
    return SampleDecision(True, "random", 2.0, 0.5, MappingProxyType({"faithfulness": 0.01}))


def _evaluations(items: list[WorkItem]) -> list[dict]:
    evaluations = asyncio.run(evaluate_items(items, RUBRICS, load_judge("offline")))
    return [e.model_dump(exclude={"created_at", "usage"}) for e in evaluations]


def test_prompts_rendered_ahead_give_the_evaluations_of_prompts_rendered_when_judged():
    items = [WorkItem(trace, _decision(n)) for n, trace in enumerate(TRACES)]
    ahead = [with_prompts(item, RUBRICS) for item in items]
    evaluations = _evaluations(items)
    assert _evaluations(ahead) == evaluations
    statuses = {e["status"] for e in evaluations}
    assert {"scored", "skipped", "error"} <= statuses  # render errors and skips are covered
    assert all(e["prompt_hash"] for e in evaluations if e["status"] == "scored"
               and not e["judge"].startswith("code:"))


def test_only_what_the_judge_will_render_is_rendered_ahead():
    no_context = next(trace for trace in TRACES if not trace.context)
    item = with_prompts(WorkItem(no_context, _decision(1)), RUBRICS)
    faithfulness = [r for r in RUBRICS if r.criterion == "faithfulness"]
    assert faithfulness and all(r.content_hash not in item.prompts for r in faithfulness)
    assert all(r.content_hash not in item.prompts for r in RUBRICS if not r.templated)
    pairwise = next(r for r in RUBRICS if r.kind == "pairwise")
    applicable = next(trace for trace in TRACES if not missing_inputs(pairwise, trace))
    item = with_prompts(WorkItem(applicable, _decision(1)), RUBRICS)
    assert "second output" in item.prompts[pairwise.content_hash]  # its error, kept as text
    unsampled = with_prompts(WorkItem(applicable, _decision(0)), RUBRICS)  # faithfulness at 0.01
    assert all(r.content_hash not in unsampled.prompts for r in faithfulness)


def test_the_judge_takes_the_prompt_rendered_ahead():
    rubric, trace = next((r, t) for r in RUBRICS for t in TRACES
                         if r.templated and r.kind != "pairwise" and not missing_inputs(r, t))
    mark = RenderedPrompt(messages=({"role": "user", "content": "ahead"},), prompt_hash="ahead")
    item = WorkItem(trace, _decision(1), {rubric.content_hash: mark})
    assert prompt_for(item, rubric) is mark
    [evaluation] = asyncio.run(evaluate_items([item], [rubric], load_judge("offline")))
    assert evaluation.prompt_hash == "ahead"
