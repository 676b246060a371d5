"""Context from every documented way retrieved documents arrive, and a reason when a retrieval
span carries no text (issue 22, item 4)."""

from __future__ import annotations

import asyncio
import json

import pytest

from evaluator.ingest.otel.normalize import normalize_spans
from evaluator.ingest.otel.otlp_json import read_otlp_json_traces
from tests.support.otel_capture import Capture

UTIL_GENAI = "opentelemetry.util.genai.handler"


def _answer(tracer) -> None:
    with tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attributes({
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                {"type": "text", "content": "Is the X100 waterproof?"}]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                {"type": "text", "content": "Yes, IP68."}]}]),
        })


def _rag(capture: Capture, scope: str, retrieve) -> None:
    tracer = capture.tracer(scope)
    with tracer.start_as_current_span("rag"):
        with tracer.start_as_current_span(retrieve.__name__) as span:
            retrieve(span)
        _answer(tracer)


def retrieval_kb(span) -> None:  # util-genai's retrieval span with ids and scores only
    span.set_attributes({"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "kb",
                         "gen_ai.retrieval.documents": json.dumps([{"id": "d1", "score": 0.9}])})


def test_spec_retrieval_documents_with_content_are_context(capture):
    def retrieval(span):
        span.set_attributes({"gen_ai.operation.name": "retrieval", "gen_ai.retrieval.documents":
                             json.dumps([{"id": "d1", "score": 0.9, "content": "The X100 is IP68."}])})
    _rag(capture, UTIL_GENAI, retrieval)
    assert normalize_spans(capture.records()).context == ["The X100 is IP68."]


def test_spec_retrieval_with_ids_only_says_why_there_is_no_context(capture):
    _rag(capture, UTIL_GENAI, retrieval_kb)
    trace = normalize_spans(capture.records())
    assert trace.context == []
    note = trace.metadata["otel"]["context_missing"]
    assert note.startswith("retrieval span 'retrieval_kb' without document text")
    assert "ids and scores only" in note


def test_openllmetry_vector_store_result_events_are_context(capture, tmp_path):
    def chroma_query(span):
        span.set_attributes({"db.system": "chroma", "db.operation": "query"})
        for number, text in enumerate(["first chunk", "second chunk"]):
            span.add_event("db.query.result", {"db.query.result.id": f"c-{number}",
                                               "db.query.result.distance": 0.1 * number,
                                               "db.query.result.document": text})
    _rag(capture, "opentelemetry.instrumentation.chromadb", chroma_query)
    assert normalize_spans(capture.records()).context == ["first chunk", "second chunk"]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(capture.otlp_json_lines()) + "\n")
    [trace] = list(read_otlp_json_traces(path))
    assert trace.context == ["first chunk", "second chunk"]


def test_vector_store_events_without_documents_say_so(capture):
    def chroma_query(span):
        span.add_event("db.query.result", {"db.query.result.id": "c-1"})
    _rag(capture, "opentelemetry.instrumentation.chromadb", chroma_query)
    trace = normalize_spans(capture.records())
    assert trace.context == []
    assert "no db.query.result.document" in trace.metadata["otel"]["context_missing"]


@pytest.mark.parametrize("output", [
    ["The X100 is IP68.", "Strap included."],
    {"outputs": [{"page_content": "The X100 is IP68.", "metadata": {}},
                 {"page_content": "Strap included."}]},
    {"outputs": [{"lc": 1, "type": "constructor", "id": ["langchain", "Document"],
                  "kwargs": {"page_content": "The X100 is IP68."}},
                 {"lc": 1, "kwargs": {"page_content": "Strap included."}}]},
])
def test_openllmetry_retrieval_task_output_is_context(capture, output):
    def retrieve_docs(span):
        span.set_attributes({"traceloop.span.kind": "task", "traceloop.entity.name": "retrieve_docs",
                             "traceloop.entity.output": json.dumps(output)})
    _rag(capture, "traceloop.sdk", retrieve_docs)
    assert normalize_spans(capture.records()).context == ["The X100 is IP68.", "Strap included."]


def test_other_openllmetry_tasks_are_not_context(capture):
    def format_answer(span):
        span.set_attributes({"traceloop.span.kind": "task", "traceloop.entity.name": "format",
                             "traceloop.entity.output": json.dumps(["not a document"])})
    _rag(capture, "traceloop.sdk", format_answer)
    trace = normalize_spans(capture.records())
    assert trace.context == [] and "context_missing" not in trace.metadata["otel"]


def test_faithfulness_skip_reason_names_the_retrieval_span(capture):
    from pathlib import Path

    from evaluator.core.work import WorkItem
    from evaluator.judges.config import JudgeConfig
    from evaluator.judges.offline import OfflineJudge
    from evaluator.rubrics import load_rubric
    from evaluator.sampling.policy import SamplingPolicy, decide
    from evaluator.worker.pipeline import evaluate_rubric

    _rag(capture, UTIL_GENAI, retrieval_kb)
    trace = normalize_spans(capture.records())
    rubric = load_rubric(Path(__file__).parents[1] / "rubrics" / "faithfulness" / "v1.jinja")
    item = WorkItem(trace, decide(trace, SamplingPolicy(rate=1.0)))
    judge = OfflineJudge(JudgeConfig(name="offline", kind="offline", params={}))
    evaluation = asyncio.run(evaluate_rubric(item, rubric, judge))
    assert evaluation.status == "skipped"
    assert "no context (retrieval span 'retrieval_kb' without document text" in evaluation.reason
