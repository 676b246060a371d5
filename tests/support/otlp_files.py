"""OTLP/JSON lines as the OpenTelemetry Collector's file exporter writes them.

One ExportTraceServiceRequest line for the spans and one ExportLogsServiceRequest line for the
log records, encoded by the SDK's own OTLP encoders, with hex trace and span ids (the OTLP/JSON
encoding) where protobuf's JSON mapping would write base64. Used by the tests' Capture and by
the conformance driver, which runs in another virtualenv (so nothing here imports pytest).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict


def otlp_json_lines(spans: Sequence[Any], logs: Sequence[Any]) -> list[str]:
    """Finished SDK spans (ReadableSpan) and log records (ReadableLogRecord) as file lines."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    lines = []
    if spans:
        lines.append(_otlp_json(encode_spans(spans)))
    if logs:
        lines.append(_otlp_json(encode_logs(logs)))
    return lines


def _hex_ids(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def _otlp_json(request: Any) -> str:
    document = MessageToDict(request, use_integers_for_enums=True)
    _hex_ids(document)
    return json.dumps(document)
