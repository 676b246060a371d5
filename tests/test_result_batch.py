"""ResultBatch JSON: what a worker publishes is what the sink decodes."""

import json

import pytest

from evaluator.core.records import DeadLetter, Evaluation, parse_trace
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.core.usage import Usage
from evaluator.queue.messages import ResultBatch


def test_round_trip_keeps_every_record():
    trace = parse_trace({"trace_id": "t-1", "input": "Why?", "context": ["doc"], "output": "Because."})
    evaluation = Evaluation(evaluation_id="e-1", trace_id="t-1", rubric="relevance", rubric_version=1,
                            rubric_hash="r", judge="bench", judge_hash="j", label="relevant",
                            score=1.0, passed=True, status="scored", usage=Usage(latency_ms=301.5), attempts=1)
    dead = DeadLetter.from_error("queue:x", {"bad": True}, ValueError("no trace_id"))
    call = JudgeCall.new(judge="bench", model="m", transport="openai", sample=0, attempt=1,
                         status="ok", evaluation_id="e-1", trace_id="t-1")
    batch = ResultBatch(evaluations=[evaluation], traces=[StoredTrace(trace, "random", 10.0)],
                        dead_letters=[dead], judge_calls=[call])
    decoded = ResultBatch.from_json(batch.to_json().encode())
    assert decoded.evaluations == [evaluation]
    assert decoded.traces == [StoredTrace(trace, "random", 10.0)]
    assert decoded.dead_letters == [dead]
    assert decoded.judge_calls == [call]


@pytest.mark.parametrize("text", ["not json", "{}", '{"evaluations": [{}], "traces": [], '
                                  '"dead_letters": []}'])
def test_bad_entries_raise(text):
    with pytest.raises(ValueError):
        ResultBatch.from_json(text)


PREVIOUS_RELEASE = (
    '{"evaluations": [{"evaluation_id": "e-1", "trace_id": "t-1", "rubric": "relevance", '
    '"rubric_version": 1, "rubric_hash": "r", "judge": "j", "judge_hash": "h", "label": "relevant", '
    '"score": 1.0, "passed": true, "reasoning": null, "status": "scored", "reason": null, '
    '"raw_reply": null, "input_tokens": 900, "output_tokens": 40, "cost_usd": null, '
    '"latency_ms": 301.5, "attempts": 1, "cached": false, "prompt_hash": null, '
    '"sample_reason": null, "sample_weight": 1.0, "truncated": false, "run_id": null, '
    '"created_at": "2025-06-01T00:00:00Z", "stability": null, "claims": null}], "traces": [], '
    '"dead_letters": [], "judge_calls": [{"call_id": "c-1", "judge": "j", "model": "m", '
    '"transport": "openai", "sample": 0, "attempt": 1, "status": "ok", "http_status": null, '
    '"error_class": null, "input_tokens": 900, "output_tokens": 40, "cost_usd": 0.0001, '
    '"latency_ms": 301.5, "cached": false, "created_at": "2025-06-01T00:00:00+00:00", '
    '"evaluation_id": "e-1", "trace_id": null, "rubric": null, "rubric_version": null, '
    '"run_id": null}]}')
"""A results entry as the previous release's worker published it (usage as four flat keys)."""


def test_usage_travels_as_the_previous_release_sends_and_reads_it():
    decoded = ResultBatch.from_json(PREVIOUS_RELEASE)
    assert decoded.evaluations[0].usage == Usage(900, 40, None, 301.5)
    assert decoded.judge_calls[0].usage == Usage(900, 40, 0.0001, 301.5)
    assert json.loads(decoded.to_json()) == json.loads(PREVIOUS_RELEASE)
    with pytest.raises(ValueError, match="input_tokens"):
        ResultBatch.from_json(PREVIOUS_RELEASE.replace('"input_tokens": 900', '"input_tokens": "many"', 1))
