"""GenAI log records (OTel events) joined to the spans they belong to.

Some instrumentations write message content to log records instead of span attributes: the
official OpenAI instrumentation's `gen_ai.user.message` / `gen_ai.choice` events (2.3b0, and
2.4b0+ without the semconv opt-in), util-genai's `gen_ai.client.inference.operation.details`
(`event_only`), OpenLLMetry with `use_legacy_attributes=False`. Each such record carries the
trace and span id of the span it was emitted in; it becomes a SpanEvent of that span (its body
under the `body` attribute), so the normalizers read it exactly as a span event.

Records come from the SDK (through EvaluatorLogExporter) or from OTLP protobuf (Collector
files). Only records whose event name starts with `gen_ai.` are kept, and of those without ids
only answer records (`gen_ai.choice`): OpenLLMetry emits a streamed answer's record after the
stream's span left the context, just before it ends, so it carries no trace or span id. Such a
record goes to the one span that can hold it (see `place`), and stays unjoined when there is
none or more than one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as OtlpLogRecord

from evaluator.ingest.otel.conventions import span_role
from evaluator.ingest.otel.spans import SpanEvent, SpanRecord, any_value, approx_size, key_values

GENAI_EVENT_PREFIX = "gen_ai."
UNADDRESSED_EVENTS = ("gen_ai.choice",)
"""The records kept without a span context: an answer can be placed by time, an input cannot."""


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One GenAI log record, addressed to its span."""

    trace_id: str
    span_id: str
    event: SpanEvent


@dataclass(frozen=True, slots=True)
class UnaddressedEvent:
    """An answer record without trace and span id, with what can tell its span: the service
    (resource) and instrumentation scope that emitted it, and its time (`event.time_ns`)."""

    service: str | None
    scope: str | None
    event: SpanEvent


@dataclass(frozen=True, slots=True)
class AnswerWindow:
    """An LLM span that could hold an unaddressed answer record: no answer record of its own."""

    trace_id: str
    span_id: str
    service: str | None
    scope: str | None
    start_ns: int
    end_ns: int

    def holds(self, record: UnaddressedEvent) -> bool:
        return (record.service == self.service and record.scope == self.scope
                and self.start_ns <= record.event.time_ns <= self.end_ns)


def answer_windows(spans: Iterable[SpanRecord]) -> list[AnswerWindow]:
    """The spans (with their addressed records joined) an unaddressed answer may belong to."""
    return [AnswerWindow(span.trace_id, span.span_id, span.service, span.scope, span.start_ns, span.end_ns)
            for span in spans
            if span.end_ns is not None and span_role(span) == "llm"
            and not any(event.name in UNADDRESSED_EVENTS for event in span.events)]


def place(records: Sequence[UnaddressedEvent], windows: Sequence[AnswerWindow],
          placeable: Callable[[AnswerWindow], bool] = lambda window: True
          ) -> tuple[list[LogEvent], list[UnaddressedEvent]]:
    """Address each record to the one window that holds it (same service and scope, emitted
    while the span was open), if `placeable`. Returns the placed records and those no window
    holds yet; a record that several windows hold, or whose choice index another record
    placed on the same span already has, is ambiguous and in neither list."""
    placed: dict[str, list[tuple[AnswerWindow, UnaddressedEvent]]] = {}
    waiting = []
    for record in records:
        holders = [window for window in windows if window.holds(record)]
        if not holders:
            waiting.append(record)
        elif len(holders) == 1 and placeable(holders[0]):
            placed.setdefault(holders[0].span_id, []).append((holders[0], record))
    events: list[LogEvent] = []
    for pairs in placed.values():
        indexes = [_choice_index(record.event) for _, record in pairs]
        if len(set(indexes)) == len(indexes):
            events.extend(LogEvent(window.trace_id, window.span_id, record.event) for window, record in pairs)
    return events, waiting


def _choice_index(event: SpanEvent) -> Any:
    body = event.attributes.get("body")
    return body.get("index", 0) if isinstance(body, Mapping) else 0


def _plain(value: Any) -> Any:
    """SDK bodies and attributes may nest mappings and sequences: make them plain."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(item) for item in value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _event(name: str | None, attributes: Mapping[str, Any], body: Any, time_ns: int) -> SpanEvent | None:
    name = name or attributes.get("event.name")
    if not isinstance(name, str) or not name.startswith(GENAI_EVENT_PREFIX):
        return None
    merged = dict(attributes)
    if body is not None:
        merged["body"] = body
    return SpanEvent(name, time_ns, merged)


def _addressed(event: SpanEvent | None, trace_id: str | None, span_id: str | None, service: Any,
               scope: str | None) -> LogEvent | UnaddressedEvent | None:
    if event is None:
        return None
    if trace_id and span_id:
        return LogEvent(trace_id, span_id, event)
    if event.name in UNADDRESSED_EVENTS:
        return UnaddressedEvent(service if isinstance(service, str) else None, scope or None, event)
    return None


def from_sdk_log(record: Any) -> LogEvent | UnaddressedEvent | None:
    """A ReadableLogRecord (SDK 1.39+) or LogData (older SDKs): both hold `.log_record`."""
    log = getattr(record, "log_record", record)
    trace_id, span_id = getattr(log, "trace_id", None), getattr(log, "span_id", None)
    attributes = _plain(getattr(log, "attributes", None) or {})
    event = _event(getattr(log, "event_name", None), attributes, _plain(getattr(log, "body", None)),
                   getattr(log, "timestamp", None) or getattr(log, "observed_timestamp", None) or 0)
    resource = getattr(record, "resource", None) or getattr(log, "resource", None)
    scope = getattr(record, "instrumentation_scope", None)
    return _addressed(event, f"{trace_id:032x}" if trace_id else None, f"{span_id:016x}" if span_id else None,
                      resource.attributes.get("service.name") if resource is not None else None,
                      scope.name if scope is not None else None)


def from_otlp_log(record: OtlpLogRecord, service: str | None = None,
                  scope: str | None = None) -> LogEvent | UnaddressedEvent | None:
    """One OTLP log record; `service` and `scope` are those of the resource and scope it is listed under."""
    if _malformed_ids(record):
        return None  # not a record emitted outside any span: see malformed_genai_record
    has_ids = any(record.trace_id)
    return _addressed(_otlp_event(record), record.trace_id.hex() if has_ids else None,
                      record.span_id.hex() if has_ids else None, service, scope)


def malformed_genai_record(record: OtlpLogRecord) -> str | None:
    """The event name of a GenAI record whose trace or span id is set but not valid (it can be
    joined to no span, so receivers reject it), else None."""
    if not _malformed_ids(record):
        return None
    event = _otlp_event(record)
    return event.name if event is not None else None


def _malformed_ids(record: OtlpLogRecord) -> bool:
    valid = len(record.trace_id) == 16 and len(record.span_id) == 8 and any(record.trace_id)
    return not valid and any(record.trace_id + record.span_id)


def _otlp_event(record: OtlpLogRecord) -> SpanEvent | None:
    body = any_value(record.body) if record.HasField("body") else None
    return _event(record.event_name, key_values(record.attributes), body,
                  record.time_unix_nano or record.observed_time_unix_nano)


def join(spans: Sequence[SpanRecord], events: Iterable[LogEvent]) -> list[SpanRecord]:
    """The spans with each log event appended to the span it names (in time order); events
    whose span is not among them are dropped."""
    by_span: dict[str, list[SpanEvent]] = {}
    for item in events:
        by_span.setdefault(item.span_id, []).append(item.event)
    if not by_span:
        return list(spans)
    joined = []
    for span in spans:
        extra = by_span.get(span.span_id)
        if extra:
            extra.sort(key=lambda event: event.time_ns)
            events_now = span.events + tuple(extra)
            span = replace(span, events=events_now, size_bytes=approx_size(span.attributes, events_now))
        joined.append(span)
    return joined


class LogBuffer:
    """Log events waiting for their trace, in bounded memory (thread-safe).

    The span exporter hands over each batch of complete traces (`attach_all`) and gets them
    back with their events joined. Events whose trace never comes (spans dropped, or not
    GenAI) leave after `max_age_s`, and past `max_events` the oldest traces' events go first.

    Unaddressed answer records wait the same way for a span that can hold them. Which spans
    could: the batch's, and those of earlier batches (remembered for `max_age_s`, at most
    `max_events`), so a record is placed only when exactly one span seen so far was open when
    it was emitted. A span still open then is not seen yet: the record is emitted just before
    its own span ends, so only a concurrent call of the same service and scope, started before
    and ending after it, could be missed.
    """

    def __init__(self, max_events: int, max_age_s: float, clock: Callable[[], float]) -> None:
        if max_events < 1 or max_age_s <= 0:
            raise ValueError("log buffer bounds must be positive")
        self.max_events = max_events
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_trace: OrderedDict[str, tuple[float, list[LogEvent]]] = OrderedDict()
        self._unaddressed: list[tuple[float, UnaddressedEvent]] = []
        self._windows: list[tuple[float, AnswerWindow]] = []
        self.buffered = 0
        self.dropped = 0

    def add(self, events: Iterable[LogEvent | UnaddressedEvent]) -> None:
        now = self._clock()
        with self._lock:
            for item in events:
                if isinstance(item, UnaddressedEvent):
                    self._unaddressed.append((now, item))
                else:
                    entry = self._by_trace.get(item.trace_id)
                    if entry is None:
                        entry = self._by_trace[item.trace_id] = (now, [])
                    entry[1].append(item)
                self.buffered += 1
            self._expire(now)

    def take(self, trace_id: str) -> list[LogEvent]:
        with self._lock:
            entry = self._by_trace.pop(trace_id, None)
            if entry is None:
                return []
            self.buffered -= len(entry[1])
            return entry[1]

    def attach_all(self, ready: Sequence[Sequence[SpanRecord]]) -> list[list[SpanRecord]]:
        """Each trace's spans with the log events buffered for it, unaddressed ones included."""
        joined = [join(spans, self.take(spans[0].trace_id)) if spans else list(spans) for spans in ready]
        windows = answer_windows(span for spans in joined for span in spans)
        now = self._clock()
        with self._lock:
            known = [window for _, window in self._windows] + windows
            this_batch = {window.span_id for window in windows}
            pending = [record for _, record in self._unaddressed]
            placed, waiting = place(pending, known, lambda window: window.span_id in this_batch)
            if len(waiting) < len(pending):
                kept = {id(record) for record in waiting}
                self.dropped += len(pending) - len(waiting) - len(placed)
                self.buffered -= len(pending) - len(waiting)
                self._unaddressed = [(seen, record) for seen, record in self._unaddressed if id(record) in kept]
            self._windows.extend((now, window) for window in windows)
            self._expire(now)
        if not placed:
            return joined
        by_trace: dict[str, list[LogEvent]] = {}
        for event in placed:
            by_trace.setdefault(event.trace_id, []).append(event)
        return [join(spans, by_trace.pop(spans[0].trace_id, ())) if spans else spans for spans in joined]

    def _expire(self, now: float) -> None:
        deadline = now - self.max_age_s
        while self._by_trace:
            trace_id, (first_seen, items) = next(iter(self._by_trace.items()))
            if first_seen > deadline and self.buffered <= self.max_events:
                break
            del self._by_trace[trace_id]
            self.buffered -= len(items)
            self.dropped += len(items)
        while self._unaddressed and (self._unaddressed[0][0] <= deadline or self.buffered > self.max_events):
            self._unaddressed.pop(0)
            self.buffered -= 1
            self.dropped += 1
        while self._windows and (self._windows[0][0] <= deadline or len(self._windows) > self.max_events):
            self._windows.pop(0)
