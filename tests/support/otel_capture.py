"""Real OpenTelemetry SDK providers for tests: spans and log records as an app would make them.

`Capture` holds a TracerProvider and a LoggerProvider, each with an in-memory exporter, so a
test can emit spans and log records under any instrumentation scope name (the name an
instrumentation package registers with) and hand the finished objects to the evaluator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from evaluator.ingest.otel.spans import SpanRecord, from_readable_span
from tests.support.otlp_files import otlp_json_lines


class Capture:
    def __init__(self, service: str = "shop-assistant") -> None:
        resource = Resource.create({"service.name": service})
        self.spans = InMemorySpanExporter()
        self.logs = InMemoryLogRecordExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))

    def tracer(self, scope: str = "test"):
        return self.tracer_provider.get_tracer(scope)

    def emit(self, scope: str, event_name: str, body: Any = None,
             attributes: dict[str, Any] | None = None) -> None:
        """Emit an event-style log record in the current span's context."""
        self.logger_provider.get_logger(scope).emit(
            LogRecord(event_name=event_name, body=body, attributes=attributes))

    def records(self) -> list[SpanRecord]:
        return [from_readable_span(span) for span in self.spans.get_finished_spans()]

    def finished_logs(self) -> list:
        return list(self.logs.get_finished_logs())

    def otlp_json_lines(self, spans: bool = True, logs: bool = True) -> list[str]:
        """What the Collector's file exporter writes for these spans and log records."""
        return otlp_json_lines(self.spans.get_finished_spans() if spans else (),
                               self.finished_logs() if logs else ())

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()


@pytest.fixture
def capture() -> Iterator[Capture]:
    """A Capture whose providers are shut down after the test."""
    found = Capture()
    yield found
    found.shutdown()
