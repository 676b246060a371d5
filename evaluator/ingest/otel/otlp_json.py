"""Reading OTLP/JSON trace files, as the OpenTelemetry Collector's file exporter writes them.

Each line is one ExportTraceServiceRequest or ExportLogsServiceRequest (a file exporter in both
the traces and the logs pipeline writes both kinds to one file; separate files can simply be
concatenated) in the OTLP/JSON encoding. GenAI log records are joined to their spans by trace
and span id (see evaluator.ingest.otel.logs) before each trace is normalized; an answer record
without ids goes to the one span of the file, of its service and scope, that was open when it
was emitted (if there is exactly one). That encoding differs
from protobuf's canonical JSON mapping in one way that matters here: trace and span ids are
hex strings, where protobuf's JSON parser expects base64 for bytes fields. Ids are converted
before handing the line to the protobuf parser; everything else is the proto package's job.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.json_format import ParseDict, ParseError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from evaluator.core.errors import ConfigError, InvalidTraceError
from evaluator.core.records import MAX_TEXT_CHARS, DeadLetter, Trace
from evaluator.ingest.otel.conventions import is_genai_span, streamed_elsewhere
from evaluator.ingest.otel.logs import (
    LogEvent,
    UnaddressedEvent,
    answer_windows,
    from_otlp_log,
    malformed_genai_record,
    place,
)
from evaluator.ingest.otel.logs import join as join_logs
from evaluator.ingest.otel.normalize import normalize_spans
from evaluator.ingest.otel.spans import SpanRecord, from_otlp_span, spans_payload

Request = TypeVar("Request", ExportTraceServiceRequest, ExportLogsServiceRequest)
_HEX_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(node: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        value = node.get(key)
        if isinstance(value, str) and _HEX_ID.fullmatch(value):
            node[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _objects(node: dict[str, Any], *keys: str) -> list[dict[str, Any]]:
    """The JSON objects listed under the first present key (anything else is left for the
    protobuf parser to reject with its own message)."""
    for key in keys:
        if key in node:
            value = node[key]
            return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
    return []


def _prepare(request: Any) -> dict[str, Any]:
    """Rewrite one OTLP/JSON request in place into protobuf's JSON mapping."""
    if not isinstance(request, dict):
        raise ValueError(f"expected a JSON object, got {type(request).__name__}")
    if _is_logs(request):
        for resource_logs in _objects(request, "resourceLogs", "resource_logs"):
            for scope_logs in _objects(resource_logs, "scopeLogs", "scope_logs"):
                for record in _objects(scope_logs, "logRecords", "log_records"):
                    _hex_ids_to_base64(record)
        return request
    if "resourceSpans" not in request and "resource_spans" not in request:
        raise ValueError("no resourceSpans or resourceLogs")
    for resource_spans in _objects(request, "resourceSpans", "resource_spans"):
        if "instrumentationLibrarySpans" in resource_spans:  # pre-1.0 name of scopeSpans
            resource_spans.setdefault("scopeSpans", resource_spans.pop("instrumentationLibrarySpans"))
        for scope_spans in _objects(resource_spans, "scopeSpans", "scope_spans"):
            for span in _objects(scope_spans, "spans"):
                _hex_ids_to_base64(span)
                for link in _objects(span, "links"):
                    _hex_ids_to_base64(link)
    return request


def _is_logs(request: dict[str, Any]) -> bool:
    return "resourceLogs" in request or "resource_logs" in request


def request_from_json(data: str | bytes, kind: type[Request] | None = None
                      ) -> ExportTraceServiceRequest | ExportLogsServiceRequest:
    """One ExportTraceServiceRequest or ExportLogsServiceRequest in the OTLP/JSON encoding (hex
    ids). Raises ValueError (or ParseError) when it is neither. `kind` is the request an OTLP
    endpoint expects: `{}` is then an empty one, as the specification allows."""
    decoded = json.loads(data)
    if kind is not None and decoded == {}:
        return kind()
    prepared = _prepare(decoded)
    request = ExportLogsServiceRequest() if _is_logs(prepared) else ExportTraceServiceRequest()
    ParseDict(prepared, request, ignore_unknown_fields=True)
    return request


def log_events(request: ExportLogsServiceRequest) -> tuple[list[LogEvent | UnaddressedEvent], list[str]]:
    """The GenAI log events of a request (other records, and records without ids other than
    answers, are not ours), and the names of the GenAI records whose traceId/spanId is set but
    not valid (not converted)."""
    events: list[LogEvent | UnaddressedEvent] = []
    invalid: list[str] = []
    for resource_logs in request.resource_logs:
        service = _service(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                malformed = malformed_genai_record(record)
                if malformed is not None:
                    invalid.append(malformed)
                elif (event := from_otlp_log(record, service, scope_logs.scope.name)) is not None:
                    events.append(event)
    return events, invalid


def _service(resource: Any) -> str | None:
    return next((kv.value.string_value for kv in resource.attributes if kv.key == "service.name"), None) or None


def span_records(request: ExportTraceServiceRequest) -> tuple[list[SpanRecord], list[str]]:
    """The request's spans, and the names of those without a valid traceId/spanId (not converted)."""
    records: list[SpanRecord] = []
    invalid: list[str] = []
    for resource_spans in request.resource_spans:
        service = _service(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    invalid.append(span.name)
                    continue
                records.append(from_otlp_span(span, service or None, scope_spans.scope.name or None))
    return records, invalid


def parse_request_line(line: str) -> tuple[list[SpanRecord], list[LogEvent | UnaddressedEvent]]:
    """Spans of one ExportTraceServiceRequest line, or the GenAI log events of one
    ExportLogsServiceRequest line. Raises ValueError (or ParseError) on a malformed line."""
    request = request_from_json(line)
    if isinstance(request, ExportLogsServiceRequest):
        return [], log_events(request)[0]  # records with bad ids: their trace's dead letter says so
    records, invalid = span_records(request)
    if invalid:
        raise ValueError(f"span {invalid[0]!r} has no valid traceId/spanId")
    return records, []


def read_otlp_json_traces(path: Path, max_text_chars: int = MAX_TEXT_CHARS) -> Iterator[Trace | DeadLetter]:
    """Every trace in the file, its spans grouped by trace_id across lines. A bad line or a
    trace that cannot be normalized becomes a DeadLetter whose source is `file:line`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"trace file {path} not found")
    traces: dict[str, list[SpanRecord]] = {}
    log_events: dict[str, list[LogEvent]] = {}
    unaddressed: list[UnaddressedEvent] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8-sig", errors="replace") as lines:  # -sig: a BOM is not text
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                spans, events = parse_request_line(line)
            except (ValueError, TypeError, ParseError, RecursionError) as exc:
                error = InvalidTraceError(
                    f"the line is not an OTLP/JSON trace request (nor logs): {exc}", field="<root>")
                yield DeadLetter.from_error(f"{path}:{number}", line.rstrip("\n"), error)
                continue
            for span in spans:
                traces.setdefault(span.trace_id, []).append(span)
                first_line.setdefault(span.trace_id, number)
            for event in events:
                if isinstance(event, UnaddressedEvent):
                    unaddressed.append(event)
                else:
                    log_events.setdefault(event.trace_id, []).append(event)
    joined = {trace_id: join_logs(spans, log_events.pop(trace_id, ())) for trace_id, spans in traces.items()}
    placed, _ = place(unaddressed, answer_windows(span for spans in joined.values() for span in spans))
    for event in placed:
        log_events.setdefault(event.trace_id, []).append(event)
    for trace_id, spans in joined.items():
        spans = join_logs(spans, log_events.pop(trace_id, ()))
        if any(map(streamed_elsewhere, spans)) and not any(map(is_genai_span, spans)):
            continue  # the answer of this streamed call is in another trace
        try:
            yield normalize_spans(spans, max_text_chars)
        except InvalidTraceError as exc:
            yield DeadLetter.from_error(f"{path}:{first_line[trace_id]}", spans_payload(spans), exc)
