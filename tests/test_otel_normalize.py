"""Spans -> Trace for each convention, multi-span traces, bad shapes, and OTLP/JSON files.

Spans are made by the real OpenTelemetry SDK (TracerProvider + in-memory exporter), so the
normalizers see exactly what an instrumented app would hand them.
"""

from __future__ import annotations

import base64
import json

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from evaluator.core.errors import InvalidTraceError
from evaluator.core.records import DeadLetter, Trace
from evaluator.ingest.files import read_traces
from evaluator.ingest.otel.normalize import feedback_of, normalize_spans
from evaluator.ingest.otel.otlp_json import read_otlp_json_traces
from evaluator.ingest.otel.spans import SpanRecord, from_readable_span


@pytest.fixture
def tracing():
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-assistant"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider.get_tracer("test"), memory
    provider.shutdown()


def _records(memory: InMemorySpanExporter) -> list[SpanRecord]:
    return [from_readable_span(span) for span in memory.get_finished_spans()]


def _parts(role: str, text: str, **extra) -> dict:
    return {"role": role, "parts": [{"type": "text", "content": text}], **extra}


def emit_semconv(tracer, answer: str = "DuckDB is an embedded analytical database.") -> None:
    with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span:
        span.set_attributes({
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Answer briefly."}]),
            "gen_ai.input.messages": json.dumps([_parts("user", "What is DuckDB?")]),
            "gen_ai.output.messages": json.dumps([_parts("assistant", answer, finish_reason="stop")]),
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 9,
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.conversation.id": "conv-7",
        })


def emit_openllmetry(tracer) -> None:
    with tracer.start_as_current_span("openai.chat") as span:
        span.set_attributes({
            "llm.request.type": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-3.5-turbo",
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "You are terse.",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": "Capital of France?",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "Paris.",
            "gen_ai.completion.0.finish_reason": "length",
            "gen_ai.usage.prompt_tokens": 20,
            "gen_ai.usage.completion_tokens": 2,
        })


def emit_events(tracer) -> None:
    with tracer.start_as_current_span("chat claude") as span:
        span.set_attributes({"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-haiku"})
        span.add_event("gen_ai.system.message", {"gen_ai.system": "anthropic", "content": "Be kind."})
        span.add_event("gen_ai.user.message", {"content": "Say hi"})
        span.add_event("gen_ai.choice", {"body": json.dumps({
            "index": 0, "finish_reason": "end_turn",
            "message": {"role": "assistant", "content": "Hi!"}})})


def emit_openinference_llm(tracer) -> None:
    with tracer.start_as_current_span("ChatCompletion") as span:
        span.set_attributes({
            "openinference.span.kind": "LLM",
            "llm.model_name": "mistral-small",
            "llm.provider": "mistralai",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "Reply in French.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.contents.0.message_content.type": "text",
            "llm.input_messages.1.message.contents.0.message_content.text": "Good morning",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "Bonjour",
            "llm.token_count.prompt": 7,
            "llm.token_count.completion": 1,
            "input.value": '{"messages": "..."}',
            "output.value": '{"choices": "..."}',
        })


def emit_agent(tracer) -> None:
    """Root CHAIN -> RETRIEVER, LLM (asks for a tool), TOOL, LLM (answers)."""
    with tracer.start_as_current_span("agent.run") as root:
        root.set_attributes({"openinference.span.kind": "CHAIN", "input.value": "Is the X100 waterproof?",
                             "output.value": "root summary", "session.id": "sess-1",
                             "user.id": "user-9", "metadata": json.dumps({"tenant": "acme"}),
                             "tag.tags": ("beta", "support")})
        with tracer.start_as_current_span("retrieve") as retriever:
            retriever.set_attributes({
                "openinference.span.kind": "RETRIEVER",
                "retrieval.documents.0.document.content": "The X100 is rated IP68.",
                "retrieval.documents.1.document.content": "The X100 ships with a strap.",
            })
        with tracer.start_as_current_span("llm.plan") as first:
            first.set_attributes({
                "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
                "llm.prompt_template.version": "support-v3",
                "llm.input_messages.0.message.role": "system",
                "llm.input_messages.0.message.content": "Use tools.",
                "llm.input_messages.1.message.role": "user",
                "llm.input_messages.1.message.content": "Is the X100 waterproof?",
                "llm.token_count.prompt": 50, "llm.token_count.completion": 5,
            })
        with tracer.start_as_current_span("lookup_rating") as tool:
            tool.set_attributes({"openinference.span.kind": "TOOL", "tool.name": "lookup_rating"})
        with tracer.start_as_current_span("llm.answer") as final:
            final.set_attributes({
                "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "Is the X100 waterproof? (tool said IP68)",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "Yes, it is rated IP68.",
                "llm.token_count.prompt": 80, "llm.token_count.completion": 8,
                "user.feedback": "thumbs_down",
            })


def test_semconv_137_span(tracing):
    tracer, memory = tracing
    emit_semconv(tracer)
    span = memory.get_finished_spans()[0]
    trace = normalize_spans(_records(memory))
    assert trace.trace_id == f"{span.context.trace_id:032x}" and len(trace.trace_id) == 32
    assert trace.span_id == f"{span.context.span_id:016x}"
    assert trace.question == "What is DuckDB?" and trace.system == "Answer briefly."
    assert trace.output == "DuckDB is an embedded analytical database."
    assert (trace.provider, trace.model) == ("openai", "gpt-4o-2024-08-06")
    assert (trace.input_tokens, trace.output_tokens, trace.finish_reason) == (12, 9, "stop")
    assert trace.session_id == "conv-7" and trace.status == "ok"
    assert trace.metadata["otel"]["conventions"] == ["gen_ai"]
    assert trace.metadata["otel"]["service"] == "shop-assistant"
    assert trace.latency_ms is not None and trace.start_time is not None


def test_openllmetry_indexed_attributes(tracing):
    tracer, memory = tracing
    emit_openllmetry(tracer)
    trace = normalize_spans(_records(memory))
    assert trace.question == "Capital of France?" and trace.system == "You are terse."
    assert trace.output == "Paris." and trace.finish_reason == "length"
    assert (trace.provider, trace.model, trace.input_tokens, trace.output_tokens) == (
        "OpenAI", "gpt-3.5-turbo", 20, 2)


def test_event_style_messages(tracing):
    tracer, memory = tracing
    emit_events(tracer)
    trace = normalize_spans(_records(memory))
    assert trace.question == "Say hi" and trace.system == "Be kind."
    assert trace.output == "Hi!" and trace.finish_reason == "end_turn"
    assert trace.metadata["otel"]["conventions"] == ["gen_ai_events"]


def test_openinference_llm_span_prefers_messages_over_raw_values(tracing):
    tracer, memory = tracing
    emit_openinference_llm(tracer)
    trace = normalize_spans(_records(memory))
    assert trace.question == "Good morning" and trace.system == "Reply in French."
    assert trace.output == "Bonjour"
    assert (trace.provider, trace.model, trace.input_tokens) == ("mistralai", "mistral-small", 7)


def test_agent_trace_assembles_context_question_final_answer_and_ids(tracing):
    tracer, memory = tracing
    emit_agent(tracer)
    spans = memory.get_finished_spans()
    by_name = {span.name: span for span in spans}
    trace = normalize_spans(_records(memory))
    assert trace.context == ["The X100 is rated IP68.", "The X100 ships with a strap."]
    assert trace.question == "Is the X100 waterproof?"
    assert trace.system == "Use tools."
    assert trace.output == "Yes, it is rated IP68."
    assert trace.span_id == f"{by_name['llm.answer'].context.span_id:016x}"
    root = by_name["agent.run"]
    assert trace.latency_ms == pytest.approx((root.end_time - root.start_time) / 1e6)
    assert trace.feedback == "negative" and trace.prompt_version == "support-v3"
    assert (trace.session_id, trace.user_id) == ("sess-1", "user-9")
    assert (trace.input_tokens, trace.output_tokens) == (130, 13)
    assert trace.tags == ["beta", "support"] and trace.metadata["tenant"] == "acme"
    assert trace.metadata["otel"]["tools"] == ["lookup_rating"]
    assert trace.metadata["otel"]["llm_calls"] == 2


def test_root_input_value_is_the_question_when_no_llm_call_has_messages(tracing):
    tracer, memory = tracing
    with tracer.start_as_current_span("chain") as root:
        root.set_attributes({"openinference.span.kind": "CHAIN", "input.value": "Why?"})
        with tracer.start_as_current_span("llm") as llm:
            llm.set_attributes({"openinference.span.kind": "LLM", "output.value": "Because."})
    trace = normalize_spans(_records(memory))
    assert (trace.question, trace.output) == ("Why?", "Because.")


def test_failed_llm_call_is_an_error_trace_even_without_output(tracing):
    tracer, memory = tracing
    with tracer.start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                             "error.type": "RateLimitError"})
        span.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
    trace = normalize_spans(_records(memory))
    assert trace.span_id == f"{memory.get_finished_spans()[0].context.span_id:016x}"
    assert trace.status == "error" and trace.output == ""
    assert trace.error == "RateLimitError: 429 Too Many Requests"


def test_trace_without_llm_output_names_what_is_missing(tracing):
    tracer, memory = tracing
    with tracer.start_as_current_span("GET /health", kind=SpanKind.SERVER) as span:
        span.set_attribute("http.route", "/health")
    with pytest.raises(InvalidTraceError) as info:
        normalize_spans(_records(memory))
    message = str(info.value)
    assert "no span carries an LLM output" in message and "gen_ai.output.messages" in message
    assert "output.value" in message and "'GET /health'" in message
    assert info.value.field == "output"


def test_llm_span_without_content_hints_at_content_capture(tracing):
    tracer, memory = tracing
    with tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"})
    with pytest.raises(InvalidTraceError, match="CAPTURE_MESSAGE_CONTENT"):
        normalize_spans(_records(memory))


@pytest.mark.parametrize(("value", "expected"), [
    ("negative", "negative"), ("thumbs_down", "negative"), ("THUMBS-DOWN", "negative"),
    ("positive", "positive"), ("thumbs_up", "positive"), ("neutral", "neutral"),
    (-1, "negative"), (0, "negative"), (0.2, "negative"), (1, "positive"), ("0", "negative"),
    (True, "positive"), (False, "negative"), ("meh?", None), (None, None), (float("nan"), None),
])
def test_feedback_values(value, expected):
    assert feedback_of(value) == expected


_ATTRIBUTE_KEYS = st.sampled_from([
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.prompt.0.content", "gen_ai.completion.0.content", "gen_ai.response.finish_reasons",
    "llm.output_messages.0.message.content", "llm.input_messages.x.message.role", "output.value",
    "gen_ai.usage.input_tokens", "llm.token_count.prompt", "openinference.span.kind",
    "retrieval.documents.0.document.content", "user.feedback", "session.id", "metadata",
])
_ATTRIBUTE_VALUES = st.one_of(
    st.text(max_size=30), st.integers(), st.floats(), st.booleans(),
    st.lists(st.text(max_size=5), max_size=3).map(tuple),
    st.sampled_from(['[{"role": "user", "parts": [{"type": "text"}]}]', "[1, 2]", '{"parts": 3}',
                     '[{"parts": [{"type": "text", "content": 5}]}]', "LLM", "[", '"x"']),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_ATTRIBUTE_KEYS, _ATTRIBUTE_VALUES, max_size=8), min_size=1, max_size=4))
def test_any_attributes_give_a_trace_or_an_invalid_trace_error(attribute_sets):
    spans = [SpanRecord("ab" * 16, f"{i + 1:016x}", None if i == 0 else f"{1:016x}", f"s{i}",
                        start_ns=i + 1, end_ns=i + 2, attributes=attrs)
             for i, attrs in enumerate(attribute_sets)]
    try:
        trace = normalize_spans(spans)
    except InvalidTraceError as exc:
        assert str(exc)
    else:
        assert isinstance(trace, Trace)


def _encode(spans) -> dict:
    """The SDK's own OTLP encoding, rendered as OTLP/JSON the way the Collector writes it
    (protobuf JSON with hex ids and integer enums)."""
    try:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    except ImportError:  # opentelemetry-exporter-otlp-proto-common not installed
        request = _encode_by_hand(spans)
    else:
        request = encode_spans(spans)
    document = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


def _any_value(value):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue

    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[_any_value(item) for item in value]))
    return AnyValue(string_value=str(value))


def _encode_by_hand(spans):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span
    from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus

    def attributes(mapping):
        return [KeyValue(key=key, value=_any_value(value)) for key, value in mapping.items()]

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(attributes(spans[0].resource.attributes))
    scope_spans = resource_spans.scope_spans.add()
    for span in spans:
        encoded = scope_spans.spans.add(
            trace_id=span.context.trace_id.to_bytes(16, "big"),
            span_id=span.context.span_id.to_bytes(8, "big"),
            parent_span_id=span.parent.span_id.to_bytes(8, "big") if span.parent else b"",
            name=span.name, kind=span.kind.value + 1,
            start_time_unix_nano=span.start_time, end_time_unix_nano=span.end_time,
            status=PbStatus(code=span.status.status_code.value, message=span.status.description or ""),
        )
        encoded.attributes.extend(attributes(span.attributes))
        for event in span.events:
            encoded.events.append(Span.Event(name=event.name, time_unix_nano=event.timestamp,
                                             attributes=attributes(event.attributes)))
    return request


def test_otlp_json_file_round_trip(tracing, tmp_path):
    tracer, memory = tracing
    emit_agent(tracer)
    agent_spans = list(memory.get_finished_spans())
    memory.clear()
    emit_semconv(tracer)
    emit_events(tracer)
    with tracer.start_as_current_span("GET /health"):
        pass
    others = list(memory.get_finished_spans())
    path = tmp_path / "traces.otlp.jsonl"
    lines = [json.dumps(_encode(agent_spans[:2])), "{not json", json.dumps(_encode(others)),
             json.dumps(_encode(agent_spans[2:])), json.dumps({"resourceSpans": [{"scopeSpans": [
                 {"spans": [{"name": "no ids"}]}]}]})]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")

    records = list(read_otlp_json_traces(path))
    traces = [r for r in records if isinstance(r, Trace)]
    dead = [r for r in records if isinstance(r, DeadLetter)]

    expected_agent = normalize_spans([from_readable_span(s) for s in agent_spans])
    assert [t.trace_id for t in traces] == [expected_agent.trace_id,
                                            *[f"{s.context.trace_id:032x}" for s in others[:2]]]
    assert traces[0].model_dump() == expected_agent.model_dump()
    assert traces[1].output == "DuckDB is an embedded analytical database."
    assert traces[1].input_tokens == 12
    assert traces[2].output == "Hi!" and traces[2].question == "Say hi"
    assert sorted(d.source for d in dead) == sorted([f"{path}:2", f"{path}:3", f"{path}:5"])
    health = next(d for d in dead if d.source == f"{path}:3")
    assert "no span carries an LLM output" in health.error and "GET /health" in health.payload
    assert "not an OTLP/JSON trace request" in next(d for d in dead if d.source == f"{path}:2").error


def test_read_traces_dispatches_on_format(tmp_path):
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps({"trace_id": "t1", "input": "q", "output": "a"}) + "\n", encoding="utf-8")
    assert [t.trace_id for t in read_traces(path, "jsonl")] == ["t1"]
    assert [type(r).__name__ for r in read_traces(path, "otlp-json")] == ["DeadLetter"]


@pytest.mark.parametrize("line", [
    '{"resourceSpans": {"a": 1}}', '{"resourceSpans": [1]}', "[]", '"x"', "{}",
    '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": 5}]}]}]}',
    '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "' + "ab" * 16 + '", "spanId": "'
    + "cd" * 8 + '", "startTimeUnixNano": "soon"}]}]}]}',
])
def test_malformed_otlp_lines_become_dead_letters(tmp_path, line):
    path = tmp_path / "bad.otlp.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    [record] = list(read_otlp_json_traces(path))
    assert isinstance(record, DeadLetter) and record.source == f"{path}:1"
    assert "not an OTLP/JSON trace request" in record.error


def test_agent_span_answer_is_used_when_no_llm_call_recorded_content(tracing):
    tracer, memory = tracing
    with tracer.start_as_current_span("invoke_agent support") as agent:
        agent.set_attributes({
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support",
            "gen_ai.input.messages": json.dumps([_parts("user", "Refund?")]),
            "gen_ai.output.messages": json.dumps([_parts("assistant", "Refund issued.")]),
        })
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"})
    trace = normalize_spans(_records(memory))
    assert trace.output == "Refund issued." and trace.question == "Refund?" and trace.model == "gpt-4o"
    assert trace.span_id == f"{memory.get_finished_spans()[1].context.span_id:016x}"


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_line(tracing, tmp_path):
    """Files saved by Windows tools start with a BOM: the first line is read like the others, in
    both trace formats (JSONL and OTLP/JSON), not turned into a dead letter."""
    tracer, memory = tracing
    emit_semconv(tracer)
    otlp = tmp_path / "bom.otlp.jsonl"
    otlp.write_bytes(b"\xef\xbb\xbf" + json.dumps(_encode(list(memory.get_finished_spans()))).encode() + b"\r\n")
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"trace_id": "b-1", "output": "first"}\r\n'
                      b'{"trace_id": "b-2", "output": "second"}\r\n')
    for path, fmt, count in ((otlp, "otlp-json", 1), (jsonl, "jsonl", 2)):
        records = list(read_traces(path, fmt))
        assert [type(r) for r in records] == [Trace] * count, (fmt, records)
