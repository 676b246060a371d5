"""GenAI log records (OTel events) joined to the spans they belong to.

Some instrumentations write message content to log records instead of span attributes: the
official OpenAI instrumentation's `gen_ai.user.message` / `gen_ai.choice` events (2.3b0, and
2.4b0+ without the semconv opt-in), util-genai's `gen_ai.client.inference.operation.details`
(`event_only`), OpenLLMetry with `use_legacy_attributes=False`. Each such record carries the
trace and span id of the span it was emitted in; it becomes a SpanEvent of that span (its body
under the `body` attribute), so the normalizers read it exactly as a span event.

Records come from the SDK (through EvaluatorLogExporter) or from OTLP protobuf (Collector
files). Only records whose event name starts with `gen_ai.` and that carry ids are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as OtlpLogRecord

from evaluator.ingest.otel.spans import SpanEvent, SpanRecord, any_value, approx_size, key_values

GENAI_EVENT_PREFIX = "gen_ai."


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One GenAI log record, addressed to its span."""

    trace_id: str
    span_id: str
    event: SpanEvent


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


def from_sdk_log(record: Any) -> LogEvent | None:
    """A ReadableLogRecord (SDK 1.39+) or LogData (older SDKs): both hold `.log_record`."""
    log = getattr(record, "log_record", record)
    trace_id, span_id = getattr(log, "trace_id", None), getattr(log, "span_id", None)
    if not trace_id or not span_id:
        return None
    attributes = _plain(log.attributes) if log.attributes else {}
    event = _event(getattr(log, "event_name", None), attributes, _plain(log.body),
                   log.timestamp or log.observed_timestamp or 0)
    return None if event is None else LogEvent(f"{trace_id:032x}", f"{span_id:016x}", event)


def from_otlp_log(record: OtlpLogRecord) -> LogEvent | None:
    if len(record.trace_id) != 16 or len(record.span_id) != 8:
        return None
    body = any_value(record.body) if record.HasField("body") else None
    event = _event(record.event_name, key_values(record.attributes), body,
                   record.time_unix_nano or record.observed_time_unix_nano)
    return None if event is None else LogEvent(record.trace_id.hex(), record.span_id.hex(), event)


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

    The span exporter takes a trace's events when the trace is complete. Events whose trace
    never comes (spans dropped, or not GenAI) leave after `max_age_s`, and past `max_events`
    the oldest traces' events go first.
    """

    def __init__(self, max_events: int, max_age_s: float, clock: Callable[[], float]) -> None:
        if max_events < 1 or max_age_s <= 0:
            raise ValueError("log buffer bounds must be positive")
        self.max_events = max_events
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_trace: OrderedDict[str, tuple[float, list[LogEvent]]] = OrderedDict()
        self.buffered = 0
        self.dropped = 0

    def add(self, events: Iterable[LogEvent]) -> None:
        now = self._clock()
        with self._lock:
            for item in events:
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

    def attach(self, spans: Sequence[SpanRecord]) -> list[SpanRecord]:
        """The spans of one trace, with the log events buffered for it."""
        return join(spans, self.take(spans[0].trace_id)) if spans else list(spans)

    def _expire(self, now: float) -> None:
        deadline = now - self.max_age_s
        while self._by_trace:
            trace_id, (first_seen, items) = next(iter(self._by_trace.items()))
            if first_seen > deadline and self.buffered <= self.max_events:
                break
            del self._by_trace[trace_id]
            self.buffered -= len(items)
            self.dropped += len(items)
