"""Scores back out as OpenTelemetry: one `gen_ai.evaluation.result` event per stored evaluation.

The GenAI semantic conventions' evaluation event, parented to the evaluated span (the trace's
OTel trace id and the span id of its answering LLM call, both kept at ingest), so Langfuse,
Phoenix, Datadog or Grafana show the score next to the trace. Attributes:
`gen_ai.evaluation.name` (the rubric), `gen_ai.evaluation.score.value`,
`gen_ai.evaluation.score.label`, `gen_ai.evaluation.explanation` (the judge's reasoning),
`gen_ai.response.id` when the span had one, `error.type` for an evaluation that errored; and
Evaluator's own `evaluator.*` (status, rubric version, judge, evaluation id, sample weight).

They leave through the SDK's own pipeline: a LoggerProvider with its own
BatchLogRecordProcessor in front of the OTLP/HTTP log exporter (EVALUATOR_EVENTS_ENDPOINT).
`emit` only puts records on the processor's queue, so the sink never waits for the network;
a full queue drops records, and failed exports are counted, never raised: `stats`, and the
Prometheus counters `evaluator_evaluation_events_{emitted,exported,failed,unparented}_total`
that `evaluator sink --metrics-port` serves (emitted - exported - failed: queued or dropped).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from evaluator.core.records import Evaluation, Trace
from evaluator.core.settings import Settings
from evaluator.worker.metrics import metrics

log = logging.getLogger(__name__)

EVENT_NAME = "gen_ai.evaluation.result"
SCOPE = "evaluator"
MAX_QUEUED = 65_536
"""Events waiting for export: a few seconds of the sink's top rate; past it they are dropped."""
_HEX_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_HEX_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_ERROR_TYPE = re.compile(r"([A-Za-z_][\w.]*(?:Error|Exception|Timeout|Exceeded))\b")


class CountingExporter(LogRecordExporter):
    """Counts what the wrapped exporter sent and what failed (an exception is a failure too)."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.exported = 0
        self.failed = 0

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        try:
            result = self.inner.export(batch)
        except Exception as exc:
            log.warning("evaluation events: export of %d failed: %r", len(batch), exc)
            result = LogRecordExportResult.FAILURE
        succeeded = result is LogRecordExportResult.SUCCESS
        with self._lock:
            if succeeded:
                self.exported += len(batch)
            else:
                self.failed += len(batch)
        (metrics().events_exported if succeeded else metrics().events_failed).inc(len(batch))
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self.inner.shutdown()


def error_type(reason: str | None) -> str:
    """The exception class an errored evaluation's reason names, else semconv's `_OTHER`."""
    found = _ERROR_TYPE.search(reason or "")
    return found.group(1) if found else "_OTHER"


def event_attributes(evaluation: Evaluation, response_id: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.evaluation.name": evaluation.rubric,
        "evaluator.status": evaluation.status,
        "evaluator.rubric_version": evaluation.rubric_version,
        "evaluator.judge": evaluation.judge,
        "evaluator.evaluation_id": evaluation.evaluation_id,
        "evaluator.sample_weight": evaluation.sample_weight,
    }
    if evaluation.score is not None:
        attributes["gen_ai.evaluation.score.value"] = evaluation.score
    if evaluation.label is not None:
        attributes["gen_ai.evaluation.score.label"] = evaluation.label
    if evaluation.reasoning:
        attributes["gen_ai.evaluation.explanation"] = evaluation.reasoning
    if response_id:
        attributes["gen_ai.response.id"] = response_id
    if evaluation.status == "error":
        attributes["error.type"] = error_type(evaluation.reason)
    return attributes


def _parent(trace_id: str, span_id: str | None):
    """The context of the evaluated span (None when the ids are not OTel's: a JSONL trace)."""
    if not _HEX_TRACE_ID.fullmatch(trace_id) or not span_id or not _HEX_SPAN_ID.fullmatch(span_id):
        return None
    context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return set_span_in_context(NonRecordingSpan(context))


def response_id_of(trace: Trace) -> str | None:
    otel = trace.metadata.get("otel")
    found = otel.get("response_id") if isinstance(otel, Mapping) else None
    return found if isinstance(found, str) else None


class EvaluationEvents:
    """`emit(evaluations, traces)` after each committed batch; `shutdown()` sends what is queued."""

    def __init__(self, exporter: LogRecordExporter, *, max_queue_size: int = MAX_QUEUED,
                 schedule_delay_millis: float = 1000) -> None:
        self._exporter = CountingExporter(exporter)
        self._provider = LoggerProvider(resource=Resource.create({"service.name": "evaluator"}))
        self._provider.add_log_record_processor(BatchLogRecordProcessor(
            self._exporter, schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=512, max_queue_size=max_queue_size))
        self._logger = self._provider.get_logger(SCOPE)
        self.emitted = 0
        self.unparented = 0
        """Events of traces whose ids are not OpenTelemetry's (JSONL input): sent without a parent."""

    @classmethod
    def to_endpoint(cls, endpoint: str, timeout_s: float = 10.0) -> EvaluationEvents:
        """Through the SDK's OTLP/HTTP log exporter; headers from OTEL_EXPORTER_OTLP_(LOGS_)HEADERS."""
        # lazy: the OTLP/HTTP exporter (requests, protobuf) loads only when events go to an endpoint
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return cls(OTLPLogExporter(endpoint=endpoint, timeout=timeout_s, compression=Compression.Gzip))

    @property
    def stats(self) -> dict[str, int]:
        exported, failed = self._exporter.exported, self._exporter.failed
        return {"emitted": self.emitted, "exported": exported, "failed": failed,
                "queued_or_dropped": self.emitted - exported - failed, "unparented": self.unparented}

    def emit(self, evaluations: Iterable[Evaluation], traces: Iterable[Trace]) -> None:
        """Queue one event per evaluation; never raises (a failure is logged and counted)."""
        emitted = unparented = 0
        try:
            spans = {trace.trace_id: (trace.span_id, response_id_of(trace)) for trace in traces}
            for evaluation in evaluations:
                span_id, response_id = spans.get(evaluation.trace_id, (None, None))
                parent = _parent(evaluation.trace_id, span_id)
                unparented += parent is None
                self._logger.emit(LogRecord(
                    timestamp=int(evaluation.created_at.timestamp() * 1e9), context=parent,
                    event_name=EVENT_NAME, body=None,
                    attributes=event_attributes(evaluation, response_id)))
                emitted += 1
        except Exception as exc:
            log.warning("evaluation events: emitting failed: %r", exc)
        finally:
            self.emitted += emitted
            self.unparented += unparented
            metrics().events_emitted.inc(emitted)
            metrics().events_unparented.inc(unparented)

    def shutdown(self) -> None:
        try:
            self._provider.shutdown()
        except Exception as exc:
            log.warning("evaluation events: shutdown failed: %r", exc)
        log.info("evaluation events: %s", self.stats)


def evaluation_events(settings: Settings) -> EvaluationEvents | None:
    """The emitter EVALUATOR_EVENTS_ENDPOINT asks for, or None when it is unset."""
    return EvaluationEvents.to_endpoint(settings.events_endpoint) if settings.events_endpoint else None
