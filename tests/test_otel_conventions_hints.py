"""The dead-letter reason for an LLM span without content says what was seen and the setting
of the instrumentation that made the span (issue 22, item 2)."""

from __future__ import annotations

import pytest

from evaluator.core.errors import InvalidTraceError
from evaluator.core.records import DeadLetter
from evaluator.ingest.otel.normalize import normalize_spans
from evaluator.ingest.otel.otlp_json import read_otlp_json_traces
from tests.support.otel_capture import Capture

OFFICIAL = "opentelemetry.instrumentation.openai_v2"
UTIL_GENAI = "opentelemetry.util.genai.handler"
OPENLLMETRY = "opentelemetry.instrumentation.openai.v1"
OPENINFERENCE = "openinference.instrumentation.openai"


def _reason(capture: Capture) -> str:
    with pytest.raises(InvalidTraceError) as info:
        normalize_spans(capture.records())
    return str(info.value)


def _chat_span(capture: Capture, scope: str, *, event_body=None):
    with capture.tracer(scope).start_as_current_span("chat gpt-4o") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"})
        if event_body is not None:
            span.add_event("gen_ai.choice", event_body)


def test_official_events_path_without_log_records_says_they_were_not_received(capture):
    _chat_span(capture, OFFICIAL)
    reason = _reason(capture)
    assert "no GenAI log records or events were received" in reason
    assert "EvaluatorLogExporter" in reason and OFFICIAL in reason
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true" in reason
    assert "turn it on" not in reason


def test_events_without_content_say_capture_is_off(capture):
    _chat_span(capture, OFFICIAL, event_body={"index": 0, "finish_reason": "stop"})
    reason = _reason(capture)
    assert "(gen_ai.choice) were received but carry no message content" in reason
    assert "capture is off" in reason and "not received" not in reason


def test_util_genai_names_its_own_values_not_true(capture):
    _chat_span(capture, UTIL_GENAI)
    reason = _reason(capture)
    assert "OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental" in reason
    assert "span_only" in reason and "'true' is not a valid value" in reason


def test_openllmetry_names_traceloop_setting(capture):
    _chat_span(capture, OPENLLMETRY)
    reason = _reason(capture)
    assert "TRACELOOP_TRACE_CONTENT=true" in reason and "use_legacy_attributes" in reason


def test_openinference_never_writes_logs_so_no_log_advice(capture):
    with capture.tracer(OPENINFERENCE).start_as_current_span("ChatCompletion") as span:
        span.set_attributes({"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o"})
    reason = _reason(capture)
    assert "OPENINFERENCE_HIDE_OUTPUTS" in reason and "EvaluatorLogExporter" not in reason
    assert "carry no message content, so content capture is off" in reason


def test_file_path_knows_the_scope_too(capture, tmp_path):
    _chat_span(capture, UTIL_GENAI)
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(capture.otlp_json_lines()) + "\n")
    [dead] = list(read_otlp_json_traces(path))
    assert isinstance(dead, DeadLetter)
    assert "gen_ai_latest_experimental" in dead.error and UTIL_GENAI in dead.error
