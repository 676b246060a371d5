"""EvaluatorLogExporter: the app's GenAI log records, joined to their spans before assembly.

Instrumentations that write message content to log records (see evaluator.ingest.otel.logs) need it
next to the EvaluatorSpanExporter:

    span_exporter = EvaluatorSpanExporter(redis_url)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(EvaluatorLogExporter(span_exporter)))

Use the SimpleLogRecordProcessor: instrumentations emit their log records before the span they
belong to ends, so with it every record is buffered before its span can reach the span
exporter. Exporting here only converts the record and appends it to an in-memory buffer (no
I/O), so it is cheap on the app's thread. Behind a BatchLogRecordProcessor a record may arrive
after its trace was already normalized; it is then dropped when it expires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from evaluator.core.errors import ConfigError
from evaluator.ingest.otel.exporter import EvaluatorSpanExporter
from evaluator.ingest.otel.logs import LogBuffer, from_sdk_log

log = logging.getLogger(__name__)


class EvaluatorLogExporter(LogRecordExporter):
    """A LogRecordExporter whose GenAI records (`gen_ai.*` events with a span context) become
    events of their spans in `span_exporter`. Other log records are ignored.

    At most `max_buffered_records` records wait for their spans, each at most `max_age_s`
    (keep it above the span exporter's assembly timeout, 30 s by default, so a record outlives
    its trace's assembly); past either bound the oldest are dropped and counted in `stats`.
    """

    def __init__(self, span_exporter: EvaluatorSpanExporter, *, max_buffered_records: int = 20_000,
                 max_age_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        try:
            self._buffer = LogBuffer(max_buffered_records, max_age_s, clock)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._received = 0
        self._closed = False
        span_exporter.join_logs(self._buffer)

    @property
    def stats(self) -> dict[str, int]:
        return {"log_records_received": self._received, "log_records_buffered": self._buffer.buffered,
                "log_records_dropped": self._buffer.dropped}

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        if self._closed:
            return LogRecordExportResult.FAILURE
        try:
            events = [event for event in map(from_sdk_log, batch) if event is not None]
            self._received += len(batch)
            self._buffer.add(events)
        except Exception as exc:  # the app must never see an exporter failure
            log.warning("evaluator log exporter lost a batch of %d log records: %r", len(batch), exc)
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self._closed = True
