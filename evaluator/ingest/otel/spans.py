"""A small, neutral span record: what normalization needs from a span, whatever its origin.

Spans come from two places: the SDK's ReadableSpan (in the app, through the exporter) and
OTLP protobuf messages (read from Collector files). Both become a SpanRecord, so the
normalizers never care where a span came from.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags
from opentelemetry.proto.trace.v1.trace_pb2 import Status as OtlpStatus
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_SPAN_OVERHEAD_BYTES = 400
"""Rough fixed cost of one buffered span (record, ids, containers), for the memory bound."""

_OTLP_KINDS = {
    OtlpSpan.SPAN_KIND_INTERNAL: "INTERNAL",
    OtlpSpan.SPAN_KIND_SERVER: "SERVER",
    OtlpSpan.SPAN_KIND_CLIENT: "CLIENT",
    OtlpSpan.SPAN_KIND_PRODUCER: "PRODUCER",
    OtlpSpan.SPAN_KIND_CONSUMER: "CONSUMER",
}
_OTLP_STATUS = {OtlpStatus.STATUS_CODE_OK: "ok", OtlpStatus.STATUS_CODE_ERROR: "error"}
_SDK_STATUS = {StatusCode.OK: "ok", StatusCode.ERROR: "error"}


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished (or, from a file, possibly unfinished) span. Ids are lowercase hex."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str = "INTERNAL"
    start_ns: int = 0
    end_ns: int | None = None
    status: str = "unset"
    """`unset`, `ok` or `error`."""
    status_message: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    service: str | None = None
    parent_is_remote: bool = False
    scope: str | None = None
    """The instrumentation scope name (which instrumentation package made the span)."""
    size_bytes: int = field(default=0, compare=False)
    """Approximate memory held by this record (see `approx_size`)."""

    @property
    def is_local_root(self) -> bool:
        """No parent, or a parent in another process: the root of what this process saw."""
        return self.parent_id is None or self.parent_is_remote


def _value_size(value: Any) -> int:
    if isinstance(value, str):  # what it takes in memory: 1, 2 or 4 bytes a character
        return sys.getsizeof(value)
    if isinstance(value, (tuple, list)):
        return sum(_value_size(item) for item in value) + 8 * len(value)
    return 8


def approx_size(attributes: Mapping[str, Any], events: tuple[SpanEvent, ...]) -> int:
    """Bytes a span holds, counted from its text: cheap, and close enough for a memory bound."""
    size = _SPAN_OVERHEAD_BYTES
    for key, value in attributes.items():
        size += len(key) + _value_size(value)
    for event in events:
        size += 64 + len(event.name)
        for key, value in event.attributes.items():
            size += len(key) + _value_size(value)
    return size


def from_readable_span(span: ReadableSpan) -> SpanRecord:
    """Convert an ended SDK span. Attributes are copied into plain dicts once: the SDK's
    bounded mapping answers every lookup in Python code, and normalization does many."""
    context = span.context
    parent = span.parent
    attributes = dict(span.attributes) if span.attributes else _EMPTY
    events = tuple(
        SpanEvent(event.name, event.timestamp or 0,
                  dict(event.attributes) if event.attributes else _EMPTY)
        for event in span.events
    )
    status = span.status
    service = span.resource.attributes.get("service.name") if span.resource is not None else None
    scope = span.instrumentation_scope.name if span.instrumentation_scope is not None else None
    return SpanRecord(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_id=f"{parent.span_id:016x}" if parent is not None else None,
        name=span.name,
        kind=span.kind.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time,
        status=_SDK_STATUS.get(status.status_code, "unset"),
        status_message=status.description,
        attributes=attributes,
        events=events,
        service=service if isinstance(service, str) else None,
        parent_is_remote=bool(parent is not None and parent.is_remote),
        scope=scope or None,
        size_bytes=approx_size(attributes, events),
    )


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as the plain Python value the SDK would have held."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(any_value(item) for item in value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def key_values(items) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in items}


def from_otlp_span(span: OtlpSpan, service: str | None = None, scope: str | None = None) -> SpanRecord:
    """Convert one OTLP protobuf span (ids are raw bytes there)."""
    attributes = key_values(span.attributes)
    events = tuple(SpanEvent(e.name, e.time_unix_nano, key_values(e.attributes)) for e in span.events)
    return SpanRecord(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex() or None,
        name=span.name,
        kind=_OTLP_KINDS.get(span.kind, "INTERNAL"),
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano or None,
        status=_OTLP_STATUS.get(span.status.code, "unset"),
        status_message=span.status.message or None,
        attributes=attributes,
        events=events,
        service=service,
        parent_is_remote=bool(span.flags & SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK),
        scope=scope or None,
        size_bytes=approx_size(attributes, events),
    )


def spans_payload(spans: list[SpanRecord], values: bool = True) -> list[dict[str, Any]]:
    """Spans as plain JSON-ready dicts: what a dead letter keeps so the trace can be inspected.

    With values=False, attributes keep their names only: enough to see which conventions a
    trace used and what it lacks, without copying unmasked user text out of the app.
    """

    def attributes(mapping: Mapping[str, Any]) -> dict[str, Any] | list[str]:
        return dict(mapping) if values else sorted(mapping)

    return [
        {
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_id": span.parent_id,
            "name": span.name,
            "status": span.status,
            "start_ns": span.start_ns,
            "end_ns": span.end_ns,
            "attributes": attributes(span.attributes),
            "events": [{"name": e.name, "attributes": attributes(e.attributes)} for e in span.events],
        }
        for span in spans
    ]
