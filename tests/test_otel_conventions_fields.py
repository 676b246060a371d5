"""Fields as the real instrumentations write them (issue 22, items 3 and 5).

Spans come from the real SDK, under the scope names and attribute shapes that the official
OpenAI instrumentation, OpenLLMetry, OpenInference and logfire use.
"""

from __future__ import annotations

import json

import pytest
from opentelemetry.trace import Status, StatusCode

from evaluator.ingest.otel.normalize import normalize_spans
from tests.support.otel_capture import Capture

ANSWER_JSON = '{"result": "42", "explanation": "six times seven"}'


# item 3: message content is text; JSON-looking text stays whole


@pytest.mark.parametrize("answer", [ANSWER_JSON, '{"a": 1}', "[1, 2, 3]", '"quoted"', "[]"])
def test_indexed_completion_that_looks_like_json_is_kept_verbatim(capture, answer):
    with capture.tracer("opentelemetry.instrumentation.openai.v1").start_as_current_span(
            "openai.chat") as span:
        span.set_attributes({
            "llm.request.type": "chat", "gen_ai.system": "openai",
            "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": '{"q": "answer as JSON"}',
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": answer,
        })
    trace = normalize_spans(capture.records())
    assert trace.output == answer
    assert trace.question == '{"q": "answer as JSON"}'


def test_indexed_content_parts_list_is_read_as_parts(capture):
    """OpenLLMetry writes a multi-part user message as the JSON of OpenAI's content parts."""
    parts = [{"type": "text", "text": "Describe this"},
             {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}]
    with capture.tracer("opentelemetry.instrumentation.openai.v1").start_as_current_span(
            "openai.chat") as span:
        span.set_attributes({
            "llm.request.type": "chat",
            "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": json.dumps(parts),
            "gen_ai.completion.0.content": "A cat.",
        })
    assert normalize_spans(capture.records()).question == "Describe this"


def test_event_content_that_looks_like_json_is_kept_verbatim(capture):
    with capture.tracer().start_as_current_span("chat gpt-4o") as span:
        span.set_attributes({"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o"})
        span.add_event("gen_ai.user.message", {"content": '{"task": "sum"}'})
        span.add_event("gen_ai.choice", {"body": json.dumps({
            "index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": ANSWER_JSON}})})
    trace = normalize_spans(capture.records())
    assert trace.output == ANSWER_JSON and trace.question == '{"task": "sum"}'


def test_event_choice_with_direct_json_content_is_kept_verbatim(capture):
    with capture.tracer().start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.system": "openai"})
        span.add_event("gen_ai.user.message", {"content": "Give JSON"})
        span.add_event("gen_ai.choice", {"content": '{"only": "field"}', "finish_reason": "stop"})
    assert normalize_spans(capture.records()).output == '{"only": "field"}'


# item 5: session and user ids, finish reasons, model, error text


def test_traceloop_association_properties_give_session_and_user(capture):
    tracer = capture.tracer("opentelemetry.instrumentation.openai.v1")
    with tracer.start_as_current_span("openai.chat") as span:
        span.set_attributes({
            "llm.request.type": "chat", "gen_ai.completion.0.content": "Hi",
            "traceloop.association.properties.session_id": "sess-42",
            "traceloop.association.properties.user_id": "user-7",
        })
    trace = normalize_spans(capture.records())
    assert (trace.session_id, trace.user_id) == ("sess-42", "user-7")


def test_openinference_finish_reason_is_read(capture):
    with capture.tracer("openinference.instrumentation.openai").start_as_current_span(
            "ChatCompletion") as span:
        span.set_attributes({
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "I cannot help with that.",
            "llm.finish_reason": "content_filter",
        })
    assert normalize_spans(capture.records()).finish_reason == "content_filter"


@pytest.mark.parametrize(("value", "expected"), [
    ('["content_filter"]', "content_filter"), ("[\"stop\", \"length\"]", "stop"),
    (("length",), "length"), ("stop", "stop"),
])
def test_finish_reasons_as_json_string_or_list(capture, value, expected):
    with capture.tracer("logfire.openai").start_as_current_span("Chat Completion") as span:
        span.set_attributes({
            "gen_ai.operation.name": "chat",
            "gen_ai.output.messages": json.dumps([{"role": "assistant",
                                                   "parts": [{"type": "text", "content": "ok"}]}]),
            "gen_ai.response.finish_reasons": value,
        })
    assert normalize_spans(capture.records()).finish_reason == expected


def test_openinference_failed_call_keeps_the_model_from_invocation_parameters(capture):
    with capture.tracer("openinference.instrumentation.openai").start_as_current_span(
            "ChatCompletion") as span:
        span.set_attributes({
            "openinference.span.kind": "LLM",
            "llm.invocation_parameters": json.dumps({"model": "gpt-4o-mini", "temperature": 0}),
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": "Hello?",
        })
        span.set_status(Status(StatusCode.ERROR, "APIConnectionError: Connection error."))
    trace = normalize_spans(capture.records())
    assert (trace.status, trace.model) == ("error", "gpt-4o-mini")


def test_error_text_is_not_repeated(capture):
    with capture.tracer("openinference.instrumentation.openai").start_as_current_span(
            "ChatCompletion") as span:
        span.set_attributes({"openinference.span.kind": "LLM", "error.type": "APIConnectionError"})
        span.set_status(Status(StatusCode.ERROR, "APIConnectionError: Connection error."))
        span.add_event("exception", {"exception.type": "openai.APIConnectionError",
                                     "exception.message": "Connection error."})
    assert normalize_spans(capture.records()).error == "APIConnectionError: Connection error."


def test_error_type_and_description_still_both_appear(capture):
    with capture.tracer().start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "error.type": "RateLimitError"})
        span.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
    assert normalize_spans(capture.records()).error == "RateLimitError: 429 Too Many Requests"


@pytest.mark.parametrize(("error_type", "expected"), [
    ("<class 'openai.NotFoundError'>", "openai.NotFoundError"),
    ("openai.NotFoundError", "openai.NotFoundError"),
    ("NotFoundError", "NotFoundError"),
    ("<class 'TimeoutError'>", "TimeoutError"),
    ("500", "500"),
])
def test_error_type_class_repr_is_normalized(capture, error_type, expected):
    """2.4b0 wrote `str(type(exc))`; the name inside is what util-genai now writes itself."""
    with capture.tracer("opentelemetry.util.genai.handler").start_as_current_span("chat m") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "error.type": error_type})
        span.set_status(Status(StatusCode.ERROR, "Error code: 404 - model not found"))
    assert normalize_spans(capture.records()).error == f"{expected}: Error code: 404 - model not found"


LOGFIRE_REQUEST_V1 = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Count to 3"}]}
LOGFIRE_REQUEST_V2 = {"model": "gpt-4o"}
"""`request_data` of logfire 5.4.0's instrument_openai with semconv version 1 and 2 (the default):
version 2 keeps the model only, so nothing on the request span says it streamed (seen by
tests/test_conformance.py)."""


def _logfire_stream(capture: Capture, duration_s: float = 1.25, request_data: dict = LOGFIRE_REQUEST_V1) -> None:
    """What logfire 5.x records for a streamed chat call made outside any span: the request span
    (no answer) ends when the stream is returned; the answer comes later in a zero-length log
    span in a trace of its own."""
    tracer = capture.tracer("logfire.openai")
    request = json.dumps(request_data)
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Count to 3"}]}])
    with tracer.start_as_current_span("Chat Completion with 'gpt-4o'") as span:
        span.set_attributes({"request_data": request, "gen_ai.operation.name": "chat",
                             "gen_ai.request.model": "gpt-4o", "gen_ai.input.messages": messages})
    log_span = tracer.start_span("streaming response from 'gpt-4o' took 1.25s")
    log_span.set_attributes({
        "request_data": request, "gen_ai.operation.name": "chat", "duration": duration_s,
        "gen_ai.input.messages": messages, "gen_ai.response.finish_reasons": '["stop"]',
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop",
                                               "parts": [{"type": "text", "content": "1 2 3"}]}]),
    })
    log_span.end(end_time=log_span.start_time)


def test_logfire_streamed_answer_has_the_stream_duration_as_latency(capture):
    _logfire_stream(capture)
    log_span = [s for s in capture.records() if s.name.startswith("streaming")]
    trace = normalize_spans(log_span)
    assert (trace.output, trace.question, trace.finish_reason) == ("1 2 3", "Count to 3", "stop")
    assert trace.latency_ms == pytest.approx(1250.0)


@pytest.mark.parametrize("request_data", [LOGFIRE_REQUEST_V1, LOGFIRE_REQUEST_V2], ids=["semconv1", "semconv2"])
def test_logfire_stream_request_span_alone_is_not_a_dead_letter(capture, tmp_path, request_data):
    """Its answer is in the log span's trace: the exporter ignores it, the file reader skips it."""
    from evaluator.ingest.otel.conventions import is_genai_span
    from evaluator.ingest.otel.otlp_json import read_otlp_json_traces

    _logfire_stream(capture, request_data=request_data)
    request_span = next(s for s in capture.records() if s.name.startswith("Chat Completion"))
    assert not is_genai_span(request_span)
    path = tmp_path / "logfire.jsonl"
    path.write_text("\n".join(capture.otlp_json_lines()) + "\n")
    [trace] = list(read_otlp_json_traces(path))
    assert trace.output == "1 2 3"


def test_a_session_id_logfire_scrubbed_is_left_out_not_a_dead_letter(capture):
    """logfire's default scrubbing replaces any attribute whose name contains "session" (seen by
    tests/test_conformance.py): the placeholder is no id, and the call is still evaluated."""
    with capture.tracer("logfire").start_as_current_span("handle request") as parent:
        parent.set_attributes({"session.id": "[Scrubbed due to 'session']", "user.id": "user-7"})
        with capture.tracer("logfire.openai").start_as_current_span("Chat Completion with 'gpt-4o'") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                                 "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                                     {"type": "text", "content": "Paris."}]}])})
    trace = normalize_spans(capture.records())
    assert (trace.output, trace.session_id, trace.user_id) == ("Paris.", None, "user-7")
