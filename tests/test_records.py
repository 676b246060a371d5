import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.core.errors import InvalidTraceError
from evaluator.core.records import (
    MAX_TEXT_CHARS,
    DeadLetter,
    Evaluation,
    evaluation_id_for,
    parse_trace,
)


def test_minimal_trace_parses_with_defaults():
    trace = parse_trace({"trace_id": "t1", "input": "What is DuckDB?", "output": "A database."})
    assert trace.question == "What is DuckDB?"
    assert trace.context == [] and trace.status == "ok" and trace.truncated == []


def test_chat_input_question_is_last_user_message():
    trace = parse_trace({
        "trace_id": "t1",
        "input": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "First?"},
                  {"role": "assistant", "content": "Yes."}, {"role": "user", "content": "Second?"}],
        "output": "ok",
    })
    assert trace.question == "Second?"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"input": "q", "output": "a"}, "trace_id"),
        ({"trace_id": "", "output": "a"}, "trace_id"),
        ({"trace_id": "t", "context": "not a list"}, "context"),
        ({"trace_id": "t", "input_tokens": -3}, "input_tokens"),
        ({"trace_id": "t", "status": "exploded"}, "status"),
        ({"trace_id": "t", "surprise": 1}, "surprise"),
        ({"trace_id": "t", "input": [{"content": "no role"}]}, "input"),
    ],
)
def test_malformed_trace_names_the_field(payload, field):
    with pytest.raises(InvalidTraceError) as info:
        parse_trace(payload)
    assert info.value.field.startswith(field)
    assert field in str(info.value)


@pytest.mark.parametrize("payload", ["{not json", "[1, 2]", "42", b"\xff\xfe", "null"])
def test_non_object_payloads_are_rejected_clearly(payload):
    with pytest.raises(InvalidTraceError, match="invalid trace"):
        parse_trace(payload)


def test_oversized_output_is_truncated_and_marked():
    trace = parse_trace({"trace_id": "t", "output": "x" * (MAX_TEXT_CHARS + 5000),
                         "context": ["y" * (MAX_TEXT_CHARS + 1)]})
    assert trace.truncated == ["context", "output"]
    assert trace.output.endswith("[... truncated by evaluator: 5060 characters removed ...]")
    assert MAX_TEXT_CHARS - 10 < len(trace.output) <= MAX_TEXT_CHARS, "the mark fits inside"
    assert parse_trace(trace.model_dump(mode="json")) == trace, "validating again changes nothing"


def test_evaluation_id_is_deterministic_and_sensitive_to_each_part():
    base = evaluation_id_for("t", "rubric-hash", "judge-hash")
    assert base == evaluation_id_for("t", "rubric-hash", "judge-hash")
    assert base != evaluation_id_for("t2", "rubric-hash", "judge-hash")
    assert base != evaluation_id_for("t", "rubric-hash2", "judge-hash")
    assert base != evaluation_id_for("t", "rubric-hash", "judge-hash2")


def test_evaluation_score_bounds_are_enforced():
    with pytest.raises(ValueError):
        Evaluation(evaluation_id="e", trace_id="t", rubric="r", rubric_version=1, rubric_hash="h",
                   judge="j", judge_hash="jh", status="scored", score=1.5)


def test_dead_letter_keeps_payload_and_field():
    try:
        parse_trace({"trace_id": 7})
    except InvalidTraceError as exc:
        letter = DeadLetter.from_error("file.jsonl:3", {"trace_id": 7}, exc)
    assert letter.field == "trace_id" and json.loads(letter.payload) == {"trace_id": 7}
    assert letter.source == "file.jsonl:3"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["trace_id", "input", "output", "context", "status", "feedback", "latency_ms",
                     "metadata", "tags", "model", "extra"]),
    json_values, max_size=8))
def test_parse_trace_only_ever_raises_invalid_trace_error(payload):
    try:
        parse_trace(payload)
    except InvalidTraceError as exc:
        assert str(exc).startswith("invalid trace")
