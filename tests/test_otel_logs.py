"""Message content in OTel log records, joined to its spans (issue 22, item 1): the live
EvaluatorLogExporter next to the span exporter, and OTLP/JSON files holding logs lines.

Spans and log records are made by the real SDK, emitted the way the instrumentations emit
them: the official OpenAI instrumentation's event path (2.3b0), util-genai's
`gen_ai.client.inference.operation.details` (2.4b0 `event_only`) and OpenLLMetry's events.
"""

from __future__ import annotations

import json

from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, use_span

from evaluator.core.records import DeadLetter, Trace
from evaluator.ingest.otel import EvaluatorLogExporter, EvaluatorSpanExporter
from evaluator.ingest.otel.logs import AnswerWindow, LogBuffer, LogEvent, UnaddressedEvent, place
from evaluator.ingest.otel.otlp_json import read_otlp_json_traces
from evaluator.ingest.otel.spans import SpanEvent
from evaluator.sampling.policy import SamplingPolicy
from tests.support.otel_capture import Capture

OFFICIAL = "opentelemetry.instrumentation.openai_v2"
UTIL_GENAI = "opentelemetry.util.genai.handler"
OPENLLMETRY = "opentelemetry.instrumentation.openai.v1"
ANSWER_JSON = '{"result": "42", "explanation": "six times seven"}'


class Live:
    """Capture plus the evaluator's span and log exporters on the same providers."""

    def __init__(self, capture: Capture, with_logs: bool = True) -> None:
        self.items: list = []
        self.spans = EvaluatorSpanExporter(sink=self.items.extend, mask=lambda t: t,
                                           policy=SamplingPolicy(rate=1.0))
        capture.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.logs = EvaluatorLogExporter(self.spans) if with_logs else None
        if self.logs is not None:
            capture.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))

    def traces(self) -> list[Trace]:
        return [item.trace for item in self.items]


def _file(capture: Capture, tmp_path) -> list:
    path = tmp_path / "collector.jsonl"
    path.write_text("\n".join(capture.otlp_json_lines()) + "\n", encoding="utf-8")
    return list(read_otlp_json_traces(path))


def emit_official_events(capture: Capture, answer: str = "Paris.", content: bool = True) -> None:
    """opentelemetry-instrumentation-openai-v2 2.3b0 with CAPTURE_MESSAGE_CONTENT=true."""
    attributes = {"gen_ai.system": "openai"}
    tracer = capture.tracer(OFFICIAL)
    with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                             "gen_ai.request.model": "gpt-4o-mini",
                             "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                             "gen_ai.response.finish_reasons": ("stop",),
                             "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 2})
        capture.emit(OFFICIAL, "gen_ai.system.message",
                     {"content": "You are terse."} if content else None, attributes)
        capture.emit(OFFICIAL, "gen_ai.user.message",
                     {"content": "Capital of France?"} if content else None, attributes)
        message = {"role": "assistant", **({"content": answer} if content else {})}
        capture.emit(OFFICIAL, "gen_ai.choice",
                     {"index": 0, "finish_reason": "stop", "message": message}, attributes)


def emit_operation_details(capture: Capture) -> None:
    """util-genai (openai-v2 2.4b0) with gen_ai_latest_experimental and event_only: content
    only in the details event, as structured attributes."""
    tracer = capture.tracer(UTIL_GENAI)
    with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                             "gen_ai.request.model": "gpt-4o-mini",
                             "gen_ai.response.finish_reasons": ("content_filter",)})
        capture.emit(UTIL_GENAI, "gen_ai.client.inference.operation.details", None, {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.system_instructions": [{"type": "text", "content": "You are terse."}],
            "gen_ai.input.messages": [{"role": "user", "parts": [
                {"type": "text", "content": "Capital of France?"}]}],
            "gen_ai.output.messages": [{"role": "assistant", "finish_reason": "content_filter",
                                        "parts": [{"type": "text", "content": "Sorry."}]}],
        })


def emit_openllmetry_events(capture: Capture) -> None:
    """OpenLLMetry with use_legacy_attributes=False: the role is dropped from the body when it
    matches the event name, the choice's message has no role."""
    attributes = {"gen_ai.provider.name": "openai"}
    tracer = capture.tracer(OPENLLMETRY)
    with tracer.start_as_current_span("openai.chat", kind=SpanKind.CLIENT) as span:
        span.set_attributes({"llm.request.type": "chat", "gen_ai.request.model": "gpt-4o-mini",
                             "traceloop.association.properties.session_id": "s-1"})
        capture.emit(OPENLLMETRY, "gen_ai.user.message", {"content": "Capital of France?"},
                     attributes)
        capture.emit(OPENLLMETRY, "gen_ai.choice", {"index": 0, "finish_reason": "stop",
                                                    "message": {"content": "Paris."}}, attributes)


def test_official_event_path_live_and_file_agree(capture, tmp_path):
    live = Live(capture)
    emit_official_events(capture)
    [trace] = live.traces()
    assert (trace.question, trace.system, trace.output) == ("Capital of France?", "You are terse.",
                                                            "Paris.")
    assert (trace.finish_reason, trace.model, trace.input_tokens) == ("stop", "gpt-4o-mini-2024-07-18", 20)
    [from_file] = _file(capture, tmp_path)
    assert isinstance(from_file, Trace)
    assert from_file.model_dump() == trace.model_dump()


def test_operation_details_event_live_and_file_agree(capture, tmp_path):
    live = Live(capture)
    emit_operation_details(capture)
    [trace] = live.traces()
    assert (trace.question, trace.system, trace.output) == ("Capital of France?", "You are terse.",
                                                            "Sorry.")
    assert trace.finish_reason == "content_filter"
    [from_file] = _file(capture, tmp_path)
    assert from_file.model_dump() == trace.model_dump()


def test_openllmetry_events_live_and_file_agree(capture, tmp_path):
    live = Live(capture)
    emit_openllmetry_events(capture)
    [trace] = live.traces()
    assert (trace.question, trace.output, trace.session_id) == ("Capital of France?", "Paris.", "s-1")
    [from_file] = _file(capture, tmp_path)
    assert from_file.model_dump() == trace.model_dump()


def test_json_answer_in_a_log_record_stays_whole(capture):
    live = Live(capture)
    emit_official_events(capture, answer=ANSWER_JSON)
    assert live.traces()[0].output == ANSWER_JSON


def test_without_log_records_the_dead_letter_says_they_were_not_received(capture, tmp_path):
    live = Live(capture, with_logs=False)
    emit_official_events(capture)
    assert live.traces() == [] and live.spans.stats["invalid"] == 1
    [dead] = _file_without_logs(capture, tmp_path)
    assert "no GenAI log records or events were received" in dead.error


def _file_without_logs(capture: Capture, tmp_path) -> list:
    path = tmp_path / "spans-only.jsonl"
    path.write_text("\n".join(capture.otlp_json_lines(logs=False)) + "\n", encoding="utf-8")
    return list(read_otlp_json_traces(path))


def test_log_records_without_content_say_capture_is_off(capture, tmp_path):
    emit_official_events(capture, content=False)
    [dead] = _file(capture, tmp_path)
    assert isinstance(dead, DeadLetter)
    assert "were received but carry no message content" in dead.error
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true" in dead.error


def test_unrelated_log_records_are_ignored(capture, tmp_path):
    live = Live(capture)
    capture.emit("app", "gen_ai.user.message", {"content": "outside any span"})
    with capture.tracer(OFFICIAL).start_as_current_span("work"):
        capture.emit("app", "app.started", {"content": "not GenAI"})
    emit_official_events(capture)
    assert [t.output for t in live.traces()] == ["Paris."]
    assert live.logs.stats["log_records_buffered"] == 0
    assert [r.output for r in _file(capture, tmp_path) if isinstance(r, Trace)] == ["Paris."]


def _event(trace_id: str) -> LogEvent:
    return LogEvent(trace_id, "ab" * 8, SpanEvent("gen_ai.choice", 0, {"body": {"content": "x"}}))


def test_log_buffer_drops_records_whose_trace_never_comes():
    now = [0.0]
    buffer = LogBuffer(max_events=100, max_age_s=10.0, clock=lambda: now[0])
    buffer.add([_event("a" * 32)])
    now[0] = 11.0
    buffer.add([_event("b" * 32)])
    assert buffer.take("a" * 32) == [] and len(buffer.take("b" * 32)) == 1
    assert (buffer.buffered, buffer.dropped) == (0, 1)


def test_log_buffer_is_bounded_in_records():
    buffer = LogBuffer(max_events=3, max_age_s=60.0, clock=lambda: 0.0)
    for number in range(5):
        buffer.add([_event(f"{number:032x}")])
    assert buffer.buffered == 3 and buffer.dropped == 2
    assert buffer.take(f"{0:032x}") == [] and buffer.take(f"{4:032x}")


class _Broken:
    @property
    def log_record(self):
        raise RuntimeError("a record that cannot be read")


def test_log_exporter_never_raises_into_the_app(capture):
    live = Live(capture)
    assert live.logs.export([object()]).name == "SUCCESS"  # not a log record: ignored
    assert live.logs.export([_Broken()]).name == "FAILURE"
    emit_official_events(capture)
    assert [t.output for t in live.traces()] == ["Paris."]


def test_logs_line_with_bad_ids_is_skipped_not_fatal(capture, tmp_path):
    emit_official_events(capture)
    lines = capture.otlp_json_lines()
    broken = json.loads(lines[1])
    for record in broken["resourceLogs"][0]["scopeLogs"][0]["logRecords"]:
        record["spanId"] = "00"
    path = tmp_path / "broken.jsonl"
    path.write_text(lines[0] + "\n" + json.dumps(broken) + "\n", encoding="utf-8")
    [dead] = list(read_otlp_json_traces(path))
    assert isinstance(dead, DeadLetter) and "no GenAI log records" in dead.error


def test_input_records_with_content_but_no_answer_record_say_so(capture, tmp_path):
    """An answer record without trace or span id emitted after the span ended: no span was open
    then, so it cannot be joined; capture is on, and the reason says what was seen."""
    attributes = {"gen_ai.provider.name": "openai"}
    with capture.tracer(OPENLLMETRY).start_as_current_span("openai.chat", kind=SpanKind.CLIENT) as span:
        span.set_attributes({"llm.request.type": "chat", "gen_ai.request.model": "gpt-4o-mini"})
        capture.emit(OPENLLMETRY, "gen_ai.user.message", {"content": "Count to 3"}, attributes)
    capture.emit(OPENLLMETRY, "gen_ai.choice", {"index": 0, "finish_reason": "stop",
                                                "message": {"content": "1 2 3"}}, attributes)
    [dead] = _file(capture, tmp_path)
    assert isinstance(dead, DeadLetter)
    assert "carry content, but no answer record (gen_ai.choice) was joined to them" in dead.error
    assert "content capture is off" not in dead.error


# -- answer records without a span context (OpenLLMetry's streamed answers) -------------------


def _open_stream(capture: Capture, question: str):
    """OpenLLMetry with use_attributes=False, streaming: the span is not current while the app
    reads the stream; the input records are emitted in its context, at the call."""
    span = capture.tracer(OPENLLMETRY).start_span("openai.chat", kind=SpanKind.CLIENT, attributes={
        "llm.request.type": "chat", "gen_ai.request.model": "gpt-4o-mini", "llm.is_streaming": True})
    with use_span(span):
        capture.emit(OPENLLMETRY, "gen_ai.user.message", {"content": question}, {"gen_ai.system": "openai"})
    return span


def _emit_choice(capture: Capture, answer: str, index: int = 0) -> None:
    """Emitted outside any span context, as OpenLLMetry does when the stream is exhausted."""
    capture.emit(OPENLLMETRY, "gen_ai.choice", {"index": index, "finish_reason": "stop",
                                                "message": {"content": answer}}, {"gen_ai.system": "openai"})


def test_streamed_answer_without_span_context_joins_the_one_span_open_then(capture, tmp_path):
    live = Live(capture)
    span = _open_stream(capture, "Count to 3")
    _emit_choice(capture, "1 2 3")
    span.end()
    [trace] = live.traces()
    assert (trace.question, trace.output, trace.finish_reason) == ("Count to 3", "1 2 3", "stop")
    assert live.logs.stats["log_records_buffered"] == 0
    [from_file] = _file(capture, tmp_path)
    assert isinstance(from_file, Trace) and from_file.model_dump() == trace.model_dump()


def test_streamed_answer_that_two_open_spans_could_hold_is_not_joined(capture, tmp_path):
    """Two concurrent streams of one service: the first answer was emitted while both were open."""
    first, second = _open_stream(capture, "Count to 3"), _open_stream(capture, "Count to 4")
    _emit_choice(capture, "1 2 3")
    first.end()
    _emit_choice(capture, "1 2 3 4")
    second.end()
    results = {item.trace_id if isinstance(item, Trace) else json.loads(item.payload)[0]["trace_id"]: item
               for item in _file(capture, tmp_path)}
    first_id, second_id = (f"{span.context.trace_id:032x}" for span in (first, second))
    assert isinstance(results[first_id], DeadLetter)
    assert "not exactly one span of its service and scope was open" in results[first_id].error
    assert isinstance(results[second_id], Trace) and results[second_id].output == "1 2 3 4"


def test_answers_emitted_while_both_streams_were_open_join_neither_live_or_file(capture, tmp_path):
    live = Live(capture)
    first, second = _open_stream(capture, "Count to 3"), _open_stream(capture, "Count to 4")
    _emit_choice(capture, "1 2 3")
    _emit_choice(capture, "1 2 3 4")
    first.end()
    second.end()
    assert live.traces() == [] and live.spans.stats["invalid"] == 2
    assert all(isinstance(item, DeadLetter) for item in _file(capture, tmp_path))


def _window(span_id: str, start: int = 10, end: int = 20, service: str = "shop", scope: str = OPENLLMETRY):
    return AnswerWindow("t" + span_id, span_id, service, scope, start, end)


def _record(time_ns: int = 15, index: int = 0, service: str = "shop", scope: str = OPENLLMETRY):
    return UnaddressedEvent(service, scope, SpanEvent("gen_ai.choice", time_ns, {"body": {"index": index}}))


def test_an_unaddressed_record_goes_to_the_one_window_holding_it():
    record = _record()
    placed, waiting = place([record], [_window("a"), _window("b", start=16)])
    assert [(event.trace_id, event.span_id, event.event) for event in placed] == [("ta", "a", record.event)]
    assert waiting == []


def test_a_record_several_windows_hold_is_ambiguous_and_not_placed():
    placed, waiting = place([_record()], [_window("a"), _window("b", start=12, end=15)])
    assert (placed, waiting) == ([], [])


def test_a_record_no_window_holds_waits():
    records = [_record(time_ns=25), _record(service="other"), _record(scope="openinference.instrumentation")]
    assert place(records, [_window("a")]) == ([], records)


def test_records_of_one_choice_index_on_one_span_are_ambiguous_other_indexes_are_not():
    assert place([_record(), _record(time_ns=16)], [_window("a")]) == ([], [])
    placed, _ = place([_record(), _record(index=1)], [_window("a")])
    assert len(placed) == 2


def test_a_record_whose_only_window_is_not_placeable_is_not_placed():
    """The live exporter: a window of an earlier batch, whose trace was already handed on."""
    assert place([_record()], [_window("a")], placeable=lambda window: False) == ([], [])
