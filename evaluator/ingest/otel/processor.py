"""The BatchSpanProcessor settings to put in front of EvaluatorSpanExporter, so bursts reach it.

The SDK's defaults (a queue of 2,048 spans, exports of 512, every 5 s) drop spans silently when
the app ends spans faster than the exporter takes them ("Queue full"): a 6,000-span burst lost
3,440. The exporter handles ~14,000 spans a second on one core (BENCHMARKS.md), so the queue
must hold a burst; spans that were dropped before the exporter show up only as incomplete
traces (`stats["traces_incomplete"]`). Measured settings: `make bench`, rows `exporter`.
"""

from __future__ import annotations

from opentelemetry.sdk.trace.export import BatchSpanProcessor

from evaluator.ingest.otel.exporter import EvaluatorSpanExporter

MAX_QUEUE_SIZE = 32_768
"""Spans held for the exporter: ~2 s of it at full speed; a span takes ~1-2 KB of the app's
memory while queued (tens of MB at worst)."""
MAX_EXPORT_BATCH_SIZE = 2_048
"""Spans per export() call: fewer, larger calls (each one re-reads the queue gauge and the
budget at most once)."""
SCHEDULE_DELAY_MILLIS = 500
"""A trickle of spans is exported every 0.5 s (the SDK's 5 s delays every score as much)."""


def evaluator_span_processor(exporter: EvaluatorSpanExporter, *,
                             max_queue_size: int = MAX_QUEUE_SIZE,
                             max_export_batch_size: int = MAX_EXPORT_BATCH_SIZE,
                             schedule_delay_millis: float = SCHEDULE_DELAY_MILLIS
                             ) -> BatchSpanProcessor:
    """The SDK's BatchSpanProcessor in front of `exporter`, with the settings above."""
    return BatchSpanProcessor(exporter, max_queue_size=max_queue_size,
                              max_export_batch_size=max_export_batch_size,
                              schedule_delay_millis=schedule_delay_millis)
