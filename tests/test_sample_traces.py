"""The bundled sample traces: valid, reproducible, realistic in shape, and useful to the embedded run."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from evaluator.core.records import Trace, parse_trace
from evaluator.judges.config import JudgeConfig
from evaluator.judges.offline import OfflineJudge
from evaluator.rubrics import RenderedPrompt, Rubric

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"
GENERATOR = ROOT / "scripts" / "generate_sample_traces.py"
RUBRICS = {
    "hallucination": ({"factual": 1.0, "hallucinated": 0.0}, 0.5, ("output",)),
    "faithfulness": (
        {"faithful": 1.0, "mostly_faithful": 0.75, "partially_faithful": 0.4, "unfaithful": 0.0}, 0.7,
        ("output", "context"),
    ),
    "relevance": (
        {"relevant": 1.0, "mostly_relevant": 0.75, "partially_relevant": 0.4, "irrelevant": 0.0}, 0.7,
        ("output",),
    ),
    "refusal": ({"complied": 1.0, "partial": 0.5, "refused": 0.0}, 0.75, ("output",)),
}
EMBEDDED_SAMPLE_RATE = 0.10


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_sample_traces", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return SAMPLE.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def traces(lines) -> list[Trace]:
    return [parse_trace(line) for line in lines]


@pytest.fixture(scope="module")
def verdicts(traces) -> list[tuple[Trace, str, object]]:
    """Every applicable (trace, criterion, verdict) on the whole file, as the pipeline would ask."""
    judge = OfflineJudge(JudgeConfig(name="offline", kind="offline", params={}))
    prompt = RenderedPrompt(messages=(), prompt_hash="x")
    rubrics = {
        criterion: Rubric(criterion=criterion, version=1, description="", labels=labels,
                          pass_threshold=threshold, template_source="", content_hash="test",
                          required_inputs=required)
        for criterion, (labels, threshold, required) in RUBRICS.items()
    }

    async def run():
        results = []
        for trace in traces:
            for criterion, rubric in rubrics.items():
                if all(getattr(trace, name) for name in rubric.required_inputs):  # else `skipped`
                    results.append((trace, criterion, await judge.judge(rubric, trace, prompt)))
        return results

    return asyncio.run(run())


def embedded_sample(trace: Trace) -> bool:
    """The embedded job's rule: 10% by sha256(trace_id), plus every error and negative feedback."""
    fraction = int.from_bytes(hashlib.sha256(trace.trace_id.encode("utf-8")).digest()[:8], "big") / 2**64
    return fraction < EMBEDDED_SAMPLE_RATE or trace.status == "error" or trace.feedback == "negative"


def test_every_line_validates_and_trace_ids_are_unique(lines, traces):
    assert len(traces) == 2000
    assert len({trace.trace_id for trace in traces}) == len(traces)
    assert all(re.fullmatch(r"[0-9a-f]{32}", trace.trace_id) for trace in traces)
    assert all(json.loads(line)["metadata"]["synthetic_truth"]["kind"] for line in lines)


def test_the_file_is_what_the_seeded_generator_writes(lines):
    generated = load_generator().generate(2000, 7)
    assert [json.loads(line) for line in lines] == generated


def test_shares_and_shape_are_realistic(traces):
    kinds = Counter(trace.metadata["synthetic_truth"]["kind"] for trace in traces)
    assert kinds == {"good": 1180, "hallucinated": 200, "unfaithful": 160, "irrelevant": 160,
                     "refusal": 140, "no_context": 100, "error": 60}
    assert 0.03 <= sum(trace.feedback == "negative" for trace in traces) / len(traces) <= 0.07
    errors = [trace for trace in traces if trace.status == "error"]
    assert all(trace.error and trace.finish_reason == "error" for trace in errors)
    assert sum(not trace.context for trace in traces) == kinds["no_context"]
    assert all(1 <= len(trace.context) <= 4 for trace in traces if trace.context)
    assert any(isinstance(trace.input, list) and trace.input[0].role == "system" for trace in traces)
    assert {trace.model for trace in traces} == {"gpt-4o-mini", "claude-3-5-haiku", "llama-3.1-8b"}
    assert {trace.prompt_version for trace in traces} == {"v1", "v2", "v3"}
    starts = sorted(trace.start_time for trace in traces)
    assert (starts[-1] - starts[0]).total_seconds() <= 3 * 86400


def test_some_questions_carry_pii_for_the_masker(traces):
    questions = " ".join(trace.question for trace in traces)
    assert re.search(r"[\w.]+@[\w.]+\.\w+", questions)
    assert "+1 415 555" in questions
    assert "4111 1111 1111 1111" in questions


def test_the_embedded_sample_sees_every_label_of_every_rubric(verdicts):
    counts = {criterion: Counter() for criterion in RUBRICS}
    for trace, criterion, verdict in verdicts:
        if embedded_sample(trace) and verdict.status == "scored":
            counts[criterion][verdict.label] += 1
    for criterion, (labels, _, _) in RUBRICS.items():
        missing = [label for label in labels if counts[criterion][label] == 0]
        assert not missing, f"{criterion}: no {missing} in the embedded sample ({dict(counts[criterion])})"


# Exact-label agreement of the offline judge with the generator's truth on the whole file, measured
# when this was written (hallucination 0.945, faithfulness 0.982, relevance 0.979, refusal 1.0).
# The floors catch a regression of the baseline; they are no claim about real-world accuracy: the
# generator's text is templated, so lexical heuristics fit it far better than real answers.
AGREEMENT_FLOORS = {"hallucination": 0.92, "faithfulness": 0.95, "relevance": 0.95, "refusal": 0.98}


def test_offline_judge_agreement_with_synthetic_truth_does_not_regress(verdicts):
    agree, total = Counter(), Counter()
    for trace, criterion, verdict in verdicts:
        expected = trace.metadata["synthetic_truth"]["expected"].get(criterion)
        if expected is None or verdict.status != "scored":
            continue
        total[criterion] += 1
        agree[criterion] += verdict.label == expected
    for criterion, floor in AGREEMENT_FLOORS.items():
        assert agree[criterion] / total[criterion] >= floor, (criterion, agree[criterion], total[criterion])
