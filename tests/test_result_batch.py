"""ResultBatch JSON: what a worker publishes is what the sink decodes."""

import pytest

from evaluator.core.records import DeadLetter, Evaluation, parse_trace
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.queue.messages import ResultBatch


def test_round_trip_keeps_every_record():
    trace = parse_trace({"trace_id": "t-1", "input": "Why?", "context": ["doc"], "output": "Because."})
    evaluation = Evaluation(evaluation_id="e-1", trace_id="t-1", rubric="relevance", rubric_version=1,
                            rubric_hash="r", judge="bench", judge_hash="j", label="relevant",
                            score=1.0, passed=True, status="scored", latency_ms=301.5, attempts=1)
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
