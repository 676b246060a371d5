"""OpenTelemetry in: the app's span exporter, span normalizers and OTLP/JSON file reading."""

from evaluator.ingest.otel.exporter import EvaluatorSpanExporter
from evaluator.ingest.otel.log_exporter import EvaluatorLogExporter
from evaluator.ingest.otel.processor import evaluator_span_processor

__all__ = ["EvaluatorLogExporter", "EvaluatorSpanExporter", "evaluator_span_processor"]
